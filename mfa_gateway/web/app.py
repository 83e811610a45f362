"""The aiohttp application: routes under the prefix, middlewares, and resources opened in ``cleanup_ctx``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from mfa_gateway.runtime import Runtime
from mfa_gateway.web import api, health
from mfa_gateway.web.errors import error_middleware, security_headers
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME


def create_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    gateway = web.Application(middlewares=[security_headers, error_middleware])
    gateway.add_routes(api.routes)
    gateway.add_routes(health.routes)

    app = web.Application(middlewares=[security_headers, error_middleware], client_max_size=api.MAX_BODY)
    app[RUNTIME] = runtime
    app[IDENTIFIER] = Identifier(
        settings, lambda: runtime.keys.session_keyring, lambda: runtime.keys.signing_keys, runtime.clock
    )
    gateway[RUNTIME] = runtime
    gateway[IDENTIFIER] = app[IDENTIFIER]
    app.add_subapp(settings.prefix, gateway)
    app.cleanup_ctx.append(_lifecycle(runtime))
    return app


def _lifecycle(runtime: Runtime):  # type: ignore[no-untyped-def]
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if runtime.settings.store.auto_migrate:
            await runtime.store.migrate()
        yield
        await runtime.close()

    return lifecycle
