"""Forwarding an allowed request to the app: headers rewritten, bodies streamed both ways, WebSockets bridged.

Request bodies reach the app byte for byte as the client sent them, compressed or not (the server never
decompresses, see ``web.app``); a body the client breaks off is the client's error (400), not the app's.

Hop-by-hop headers (RFC 9110 §7.6.1) and any header named in ``Connection`` never cross the gateway. Identity
headers are removed from the client's request and set by the gateway alone. The ``Cookie`` header is rebuilt from
what the gateway read (``cookie_header``), without the gateway's own cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from mfa_gateway.web.bodies import IncompleteBody

log = logging.getLogger("mfa_gateway.proxy")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)


WEBSOCKET_HANDSHAKE = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)


class UpstreamError(Exception):
    """The app could not be reached (``status`` 502) or did not answer in time (504)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _UpstreamErrors:
    """The one mapping of a failed call to the app: no answer in time is 504, no connection 502.

    A class rather than ``@contextmanager``: it wraps every proxied request, and a generator-based manager costs a
    generator and a wrapper object each time."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        failure = _upstream_error(exc)
        if failure is not None:
            raise failure from exc


def _upstream_error(exc: BaseException | None) -> UpstreamError | None:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, "the app did not answer in time")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(502, "the app cannot be reached")
    return None


upstream_errors = _UpstreamErrors()


_NAMED: dict[tuple[str, ...], frozenset[str]] = {}
NAMED_CACHE_SIZE = 256
NAMED_CACHE_LENGTH = 256
"""``Connection`` values (up to 256 characters in all) whose hop-by-hop set is remembered: an app sends the same one
(``keep-alive``, ``close``) on every answer."""


def hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """The hop-by-hop headers and every header ``Connection`` names (lower case), remembered per ``Connection``."""
    connection = tuple(headers.getall("Connection", ()))
    known = _NAMED.get(connection)
    if known is None:
        named = {token.strip().lower() for value in connection for token in value.split(",")}
        known = HOP_BY_HOP | named
        if sum(map(len, connection)) <= NAMED_CACHE_LENGTH:
            if len(_NAMED) >= NAMED_CACHE_SIZE:
                _NAMED.clear()
            _NAMED[connection] = known
    return known


class Upstream:
    """One pooled keep-alive client session to the app (opened and closed by the app's cleanup context)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive_timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._limits = {"limit": max_connections, "keepalive_timeout": keepalive_timeout}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=int(self._limits["limit"]),
            limit_per_host=0,
            keepalive_timeout=self._limits["keepalive_timeout"],
            enable_cleanup_closed=False,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Upstream.start() runs in the app's cleanup context"
        return self._session

    async def forward(
        self,
        request: web.Request,
        target: str,
        headers: CIMultiDict[str],
        decorate: Callable[[web.StreamResponse], None] | None = None,
    ) -> web.StreamResponse:
        """Send the request to ``target`` (path and query) and stream the answer back to the client."""
        body = request.content if request.body_exists else None
        try:
            upstream = await self.session.request(
                request.method, self.base_url + target, headers=headers, data=body, allow_redirects=False
            )
        except Exception as exc:  # not `with upstream_errors`: a context manager's two calls on every request
            failure = _upstream_error(exc)
            if failure is None:
                raise
            if body is not None and body.exception() is not None:
                raise IncompleteBody() from exc  # the client's body broke off, not the app: no upstream error
            raise failure from exc
        try:
            skip = hop_by_hop(upstream.headers)
            passed = [(name, value) for name, value in upstream.headers.items() if name.lower() not in skip]
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=passed)
            if "Content-Length" not in upstream.headers and upstream.status not in (204, 304):
                response.enable_chunked_encoding()
            if decorate is not None:
                decorate(response)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError) as exc:
            log.warning("upstream response broke off: %s", type(exc).__name__)
            if request.transport is not None:
                request.transport.close()  # the status line is out; all we can do is stop
            return response
        finally:
            upstream.release()
        return response

    async def bridge_websocket(
        self, request: web.Request, target: str, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        """Accept the client's WebSocket and pump messages both ways to the app's WebSocket."""
        ws_url = ("ws" + self.base_url.removeprefix("http")) + target
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        for name in WEBSOCKET_HANDSHAKE:  # the client's handshake is answered here; ws_connect makes its own
            headers.popall(name, None)
        with upstream_errors:
            app_ws = await self.session.ws_connect(ws_url, headers=headers, protocols=protocols, autoping=True)
        client_ws = web.WebSocketResponse(protocols=[app_ws.protocol] if app_ws.protocol else ())
        await client_ws.prepare(request)

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
            await sink.close()

        tasks = [asyncio.create_task(pump(client_ws, app_ws)), asyncio.create_task(pump(app_ws, client_ws))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                    await task
            await app_ws.close()
            await client_ws.close()
        return client_ws
