"""Liveness and readiness. Liveness never touches a dependency; readiness checks each one.

Readiness also requires every required secret to be usable (loaded, not failed closed, not stale beyond max_stale)
and a live revocation feed: without it the gateway refuses protected routes (fail closed), so a
load balancer should not send it traffic.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.web.keys import RUNTIME

routes = web.RouteTableDef()
PING_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks = {"store": runtime.store.ping(), "state": runtime.state.ping()}
    results = {}
    for name, ping in checks.items():
        try:
            await asyncio.wait_for(ping, PING_TIMEOUT)
            results[name] = "ok"
        except (DependencyUnavailable, TimeoutError):
            results[name] = "unavailable"
    results["revocations"] = "ok" if runtime.revocations.healthy else "unavailable"
    results["secrets"] = "ok" if runtime.secrets_ready else "unavailable"
    ready = all(result == "ok" for result in results.values())
    return web.json_response(
        {"status": "ready" if ready else "unready", "checks": results}, status=200 if ready else 503
    )
