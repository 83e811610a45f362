"""The Python floor for the benchmark: the smallest correct aiohttp reverse proxy (scenario S2).

It forwards every request to ``--upstream`` the way the gateway's ``mfa_gateway/web/upstream.py`` does, so that
"gateway minus this" is what the gate costs and nothing else:

* uvloop, access log off, one ``ClientSession`` per process with explicit ``TCPConnector`` limits and a keep-alive
  timeout below the upstream's (nginx's 75 s);
* hop-by-hop headers (and any header named in ``Connection``) dropped both ways, ``X-Forwarded-*`` set;
* bodies streamed both ways (``request.content`` up, ``iter_any`` down), chunked when the app sent no length.

``--hello`` serves a fixed 200 instead (the aiohttp hello-world the forward-auth endpoint is compared with).
``--workers N`` serves the port from N processes (``SO_REUSEPORT``, aiohttp's way of using several cores; the
kernel spreads connections over them), as the gateway's ``serve --workers N`` does: mode B of the benchmark.

    python bench/minimal_proxy.py --port 8081 --upstream http://127.0.0.1:8080 [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
SESSION = web.AppKey("session", aiohttp.ClientSession)
BASE = web.AppKey("base", str)


def hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    named = {token.strip().lower() for value in headers.getall("Connection", []) for token in value.split(",")}
    return HOP_BY_HOP | named


async def forward(request: web.Request) -> web.StreamResponse:
    skip = hop_by_hop(request.headers)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in skip and k.lower() != "expect")
    peer = request.remote or ""
    forwarded_for = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    try:
        upstream = await request.app[SESSION].request(
            request.method,
            request.app[BASE] + request.raw_path,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        )
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return web.Response(status=504, text="upstream timeout\n")
    except aiohttp.ClientError:
        return web.Response(status=502, text="upstream unavailable\n")
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        skip = hop_by_hop(upstream.headers)
        for name, value in upstream.headers.items():
            if name.lower() not in skip:
                response.headers.add(name, value)
        if "Content-Length" not in upstream.headers and upstream.status not in (204, 304):
            response.enable_chunked_encoding()
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError):
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        upstream.release()
    return response


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


def create_app(upstream: str, max_connections: int, keepalive_timeout: float) -> web.Application:
    app = web.Application()
    app[BASE] = upstream.rstrip("/")

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=keepalive_timeout,
            enable_cleanup_closed=False,
            ttl_dns_cache=60,
        )
        app[SESSION] = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def create_hello_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def serve_until_stopped(
    app: web.Application, host: str, port: int, name: str, *, reuse_port: bool = False, backlog: int = 1024
) -> None:
    """Serves ``app`` (access log off) until SIGTERM or SIGINT; also U1's way (bench/u1_upstream.py)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=backlog, reuse_port=reuse_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{name} listening on http://{host}:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


async def serve(args: argparse.Namespace) -> None:
    app = create_hello_app() if args.hello else create_app(args.upstream, args.max_connections, args.keepalive)
    await serve_until_stopped(app, args.host, args.port, "minimal proxy", reuse_port=args.workers > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:8080", help="http://HOST:PORT of the app")
    parser.add_argument("--max-connections", type=int, default=256, help="pooled keep-alive connections")
    parser.add_argument("--keepalive", type=float, default=15.0, help="idle seconds (below the upstream's 75 s)")
    parser.add_argument("--hello", action="store_true", help="answer 200 itself instead of proxying")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    args = parser.parse_args()
    children = []
    for _ in range(args.workers - 1):  # forked before any event loop exists; each child runs its own
        pid = os.fork()
        if pid == 0:
            uvloop.run(serve(args))
            os._exit(0)
        children.append(pid)
    try:
        uvloop.run(serve(args))
    finally:
        for pid in children:  # this process's own children, stopped as it was
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
