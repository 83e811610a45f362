"""The admin listener, on its own port (``admin.host``/``admin.port``), never exposed to users.

``GET /metrics`` answers in the Prometheus text format: every worker's counters and histograms, plus gauges measured
at scrape time by this process (store, Redis and revocation-feed health). It is served by one process per replica
(the first worker), which merges the samples of all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.metrics import Gauges
from mfa_gateway.runtime import Runtime
from mfa_gateway.web.errors import error_middleware, security_headers
from mfa_gateway.web.keys import RUNTIME

PING_TIMEOUT = 2.0


async def _up(check: Awaitable[None]) -> float:
    try:
        await asyncio.wait_for(check, PING_TIMEOUT)
    except (DependencyUnavailable, TimeoutError):
        return 0.0
    return 1.0


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    up = GaugeMetricFamily(
        "mfa_gateway_dependency_up", "1 when a dependency answers (measured at scrape time).", labels=["dependency"]
    )
    up.add_metric(["store"], await _up(runtime.store.ping()))
    up.add_metric(["redis" if runtime.settings.state.backend == "redis" else "state"], await _up(runtime.state.ping()))
    feed = GaugeMetricFamily(
        "mfa_gateway_revocation_feed_healthy",
        "1 while this process's revocation view is current (0: protected routes fail closed).",
        value=1.0 if runtime.revocations.healthy else 0.0,
    )
    body = runtime.metrics.exposition(Gauges([up, feed]))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_admin_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[security_headers, error_middleware])
    app[RUNTIME] = runtime
    app.router.add_get("/metrics", metrics)
    return app
