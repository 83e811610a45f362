"""The aiohttp application.

* ``{prefix}/…``: the gateway's own API, pages and health checks (a sub-application with security headers on every
  response; aiohttp never falls through from it, so unknown routes are its JSON 404s).
* ``{prefix}/auth``: the forward-auth endpoint, answered ahead of that sub-application (``forward_auth.ForwardAuth``
  does the work of its middlewares itself): a proxy asks it once per request of its own.
* everything else: the reverse proxy to ``upstream.url`` (when configured), behind the gate.

Resources (store migrations, the upstream connection pool, the revocation feed) open and close in ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mfa_gateway.core.errors import MfaError
from mfa_gateway.runtime import Runtime
from mfa_gateway.web import (
    account_pages,
    api,
    assets,
    devices_api,
    forward_auth,
    health,
    pages,
    sessions_api,
    webauthn_api,
    webauthn_pages,
)
from mfa_gateway.web.errors import SETTINGS, error_middleware, security_headers
from mfa_gateway.web.gate import Gate
from mfa_gateway.web.headers import UpstreamHeaders
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.keys import GATE, HEADERS, IDENTIFIER, REFUSALS, RUNTIME, UPSTREAM
from mfa_gateway.web.observe import observed
from mfa_gateway.web.protocol import DIRECT, PROXIED, Handler
from mfa_gateway.web.proxy import Proxy
from mfa_gateway.web.refusals import Refusals
from mfa_gateway.web.upstream import Upstream

log = logging.getLogger("mfa_gateway")
STARTUP_FEED_WAIT = 5.0
"""Seconds start-up waits for the revocation feed before accepting traffic (readiness stays false until then)."""


def create_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    identifier = Identifier(
        settings,
        lambda: runtime.keys.session_keyring,
        lambda: runtime.keys.signing_keys,
        runtime.revocations,
        runtime.clock,
    )
    gate = Gate(settings, identifier, runtime.revocations, runtime.clock, lambda: runtime.keys.session_keyring)
    refusals = Refusals(settings)
    headers = UpstreamHeaders(settings)

    gateway = web.Application(middlewares=[observed, security_headers, error_middleware])
    own = (
        api.routes,
        webauthn_api.routes,
        devices_api.routes,
        sessions_api.routes,
        account_pages.routes,
        health.routes,
        pages.routes,
        webauthn_pages.routes,
        assets.routes,
    )
    for routes in own:
        gateway.add_routes(routes)

    # Proxy errors become answers in Proxy.handle itself. aiohttp decompresses request bodies by default, which
    # would hand the app a gzip-labelled body decompressed (and cut at the old Content-Length): never decompress, so
    # a proxied body is forwarded byte for byte; the gateway's own routes refuse encoded bodies (web.bodies).
    app = web.Application(client_max_size=api.MAX_BODY, handler_args={"auto_decompress": False})
    for application in (app, gateway):
        application[RUNTIME] = runtime
        application[IDENTIFIER] = identifier
        application[GATE] = gate
        application[REFUSALS] = refusals
        application[HEADERS] = headers
        application[SETTINGS] = settings
    # {prefix}/auth is answered ahead of the {prefix} sub-application and its middlewares (ForwardAuth does their work
    # itself): by the server for the exact path, and by the root router (longest path first) for any other spelling.
    answer = forward_auth.ForwardAuth(gate, identifier, refusals, headers, runtime.metrics)
    direct: dict[str, Handler] = {settings.prefix + "/auth": answer.handle}
    app[DIRECT] = direct
    app.router.add_route("*", settings.prefix + "/auth", answer.handle)
    app.add_subapp(settings.prefix, gateway)
    upstream_url = settings.upstream.url
    if upstream_url:
        upstream = Upstream(
            upstream_url,
            connect_timeout=settings.upstream.connect_timeout,
            read_timeout=settings.upstream.read_timeout,
            max_connections=settings.upstream.max_connections,
            keepalive_timeout=settings.upstream.keepalive_timeout,
        )
        app[UPSTREAM] = gateway[UPSTREAM] = upstream
        proxy = Proxy(gate, refusals, headers, identifier, upstream, runtime.metrics)
        # Every path outside {prefix} is the proxy's: answered by the server without routing (protocol.PROXIED).
        app[PROXIED] = (settings.prefix, app.router.add_route("*", "/{tail:.*}", proxy.handle))
        app.cleanup_ctx.append(_upstream_pool(upstream))
    app.cleanup_ctx.append(_lifecycle(runtime))
    return app


def _upstream_pool(upstream: Upstream) -> Callable[[web.Application], AsyncIterator[None]]:
    async def pool(app: web.Application) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    return pool


def _lifecycle(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if runtime.settings.store.auto_migrate:
            await runtime.store.migrate()
        try:
            await runtime.cipher.start()
        except MfaError:
            log.warning(
                "the TOTP cipher could not learn the Transit key's version (Vault unreachable): codes are still "
                "checked (Transit rows answer 503 while Vault is down), but rows under an older key are not "
                "re-encrypted on use until an enrollment learns it or the gateway restarts; mfa-gateway rekey "
                "moves them"
            )
        stop_refresh = asyncio.Event()
        refresh = asyncio.create_task(runtime.run_secret_refresh(stop_refresh), name="secret-refresh")
        feed = asyncio.create_task(runtime.revocations.run(), name="revocation-feed")
        if not await runtime.revocations.wait_healthy(STARTUP_FEED_WAIT):
            log.warning(
                "revocation feed not live after %.0f s; protected routes answer 503 until it is", STARTUP_FEED_WAIT
            )
        yield
        feed.cancel()
        stop_refresh.set()
        await asyncio.wait([feed, refresh], timeout=5)
        await runtime.close()

    return lifecycle
