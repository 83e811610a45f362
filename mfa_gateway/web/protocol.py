"""Requests refused before any handler of ours runs, answered in the gateway's shape.

aiohttp refuses some requests itself: its parser (a bad method token, a control byte in a header, an invalid
``Transfer-Encoding`` or ``Content-Length``, a line too long) and its routing before the middlewares (an unknown
``Expect`` is 417; a path outside ``{prefix}`` with no upstream is 404). Left alone it answers these with a text body
quoting the offending bytes, and logs every parser error with a traceback at error level, so an anonymous client
could fill the error log. ``GatewayRunner`` serves an application through ``RefusingRequestHandler``, which answers
them like any other error (``errors.framework_refusal``: JSON, or a page for a browser), quotes nothing, and logs
one line without a traceback. A genuine bug in a handler (a 500) still logs its traceback.

aiohttp has no public hook for this (aio-libs/aiohttp#3287), hence the subclasses of its request handler and server.

The same server answers the paths in ``DIRECT`` (the forward-auth endpoint) ahead of the application's router: a
request whose request-target is exactly such a path, without ``Expect``, goes straight to its handler, which must
do for itself what a route's middlewares would (``forward_auth.ForwardAuth`` does). A proxy asks it once per request
of its own, and the router and the middleware layer a sub-application imposes on every route of its parent cost
several microseconds. Any other spelling of the path (a query string, percent-encoding, absolute form) takes the
router to the same handler.

Likewise ``PROXIED`` (the reverse proxy's catch-all route): a request without ``Expect`` whose path, as the router
reads it, is outside the ``{prefix}`` sub-application goes straight to the route's handler, which is where the
router would send it (the catch-all matches every such path). It carries the route's match information, built once
and frozen, so ``request.app`` and ``request.match_info`` read as if routed; only the per-request routing and the
current-application middleware layer are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from mfa_gateway.web.errors import framework_refusal

log = logging.getLogger("mfa_gateway.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DIRECT: web.AppKey[dict[str, Handler]] = web.AppKey("direct_routes")
"""Request-targets answered ahead of the router, each by its handler (also routed, for the other spellings)."""
PROXIED: web.AppKey[tuple[str, web.AbstractRoute]] = web.AppKey("proxied_route")
"""The ``{prefix}`` the router keeps for the gateway's own routes, and the catch-all route of every other path."""


class RefusingRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with the gateway's answers to what the framework refuses."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Called for a request the parser rejected (``message`` quotes it: never sent), a handler that timed out
        (504) or raised (500); the connection is closed afterwards, as aiohttp does."""
        if status >= 500 and exc is not None:
            log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        else:
            log_refusal(request, status, type(exc).__name__ if exc is not None else "timeout")
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started: no error response can follow")
        response = framework_refusal(request, status)
        response.force_close()
        return response

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """An HTTP error raised outside every middleware (aiohttp's ``Expect`` check, a top-level 404 or 405)
        becomes the gateway's answer; everything else is sent as it is."""
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            log_refusal(request, resp.status, type(resp).__name__)
            resp = framework_refusal(request, resp.status, resp.headers.get("Allow"))
        return await super().finish_response(request, resp, start_time)


def log_refusal(request: web.BaseRequest, status: int, reason: str) -> None:
    """One line per refused request: the status and the kind of refusal, never the request's bytes."""
    log.info(
        "refused a request the framework could not serve: %d %s",
        status,
        reason,
        extra={
            "status": status,
            "reason": reason,
            "client_ip": request.remote,
        },
    )


class _RefusingServer(web.Server):
    """aiohttp's server (the protocol factory), building ``RefusingRequestHandler``s."""

    def __init__(self, made: web.Server, direct: Mapping[str, Handler], proxied: Proxied | None) -> None:
        super().__init__(
            _dispatcher(made.request_handler, direct, proxied) if direct or proxied else made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )

    def __call__(self) -> web.RequestHandler:
        return RefusingRequestHandler(self, loop=self._loop, **self._kwargs)


class Proxied:
    """Where the router would send a request outside ``prefix``: ``route``, with its match information (no match
    values, the application's stack), made once and frozen (``current_app`` is only changed by the middleware layer
    that is skipped)."""

    def __init__(self, app: web.Application, prefix: str, route: web.AbstractRoute) -> None:
        self.prefix, self.below = prefix, prefix + "/"
        self.handler = route.handler
        self.match_info = UrlMappingMatchInfo({}, route)
        self.match_info.add_app(app)
        self.match_info.freeze()

    def takes(self, request: web.BaseRequest) -> bool:
        """Whether the router would send ``request`` to the catch-all route: its path, as the router reads it
        (decoded, ``/`` kept encoded), starts with ``/``, is not in the ``{prefix}`` sub-application and has no line
        feed (which the catch-all's ``.*`` does not match: the router answers 404)."""
        path = request.rel_url.path_safe
        return path[:1] == "/" and path != self.prefix and not path.startswith(self.below) and "\n" not in path


def _dispatcher(
    routed: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    direct: Mapping[str, Handler],
    proxied: Proxied | None,
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The server's handler: a ``DIRECT`` request-target to its handler, a path for the proxy to its handler,
    everything else to the application (a plain function returning the awaitable, so the other requests pay no
    extra coroutine)."""

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if hdrs.EXPECT in request.headers:
            return routed(request)  # the router checks Expect (417 for an unknown one, 100 Continue)
        handler = direct.get(request.raw_path)
        if handler is not None:
            return handler(cast(web.Request, request))  # the application's request factory makes web.Requests
        if proxied is not None and proxied.takes(request):
            routed_request = cast(web.Request, request)
            routed_request._match_info = proxied.match_info  # as the router sets it (see Proxied)
            return proxied.handler(routed_request)
        return routed(request)

    return dispatch


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are handled by ``RefusingRequestHandler``, answering the application's
    ``DIRECT`` request-targets and ``PROXIED`` paths ahead of its router."""

    async def _make_server(self) -> web.Server:
        direct = self.app.get(DIRECT)
        proxied = self.app.get(PROXIED)
        catch_all = None if proxied is None else Proxied(self.app, *proxied)
        return _RefusingServer(await super()._make_server(), direct or {}, catch_all)
