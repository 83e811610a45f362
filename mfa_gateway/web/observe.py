"""What every request leaves behind: a metric sample and, at log level info, one structured access event.

Both are written in one place, after the response is ready, with labels from small fixed sets (route class and
decision). The access event carries the request id, method, the path without its query string (queries carry
tokens), status, decision, user where known and latency; never a header, cookie or body.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from mfa_gateway.runtime.metrics import Metrics
from mfa_gateway.web.errors import Handler
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME
from mfa_gateway.web.request_ids import REQUEST_ID, request_id

access_log = logging.getLogger("mfa_gateway.access")
STARTED = web.RequestKey("started", float)


def finish(
    metrics: Metrics,
    request: web.Request,
    route: str,
    decision: str,
    status: int,
    started: float,
    user: str | None = None,
    client_ip: str | None = None,
) -> None:
    elapsed = time.perf_counter() - started
    metrics.observe(route, decision, elapsed)
    if access_log.isEnabledFor(logging.INFO):
        path = request.raw_path.partition("?")[0]
        access_log.info(
            "%s %s %d",
            request.method,
            path,
            status,
            extra={
                "request_id": request[REQUEST_ID],  # set first by the proxy handler and by `observed`
                "route": route,
                "method": request.method,
                "path": path,
                "status": status,
                "decision": decision,
                "user": user,
                "latency_ms": round(elapsed * 1000, 3),
                "client_ip": client_ip or request.remote,
            },
        )


@web.middleware
async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The gateway's own routes (pages, API, health): route class ``gateway``, decision ``served``. The proxy and
    forward-auth handlers record their own samples (``finish``), with their route class and decision."""
    started = request[STARTED] = time.perf_counter()
    metrics = request.app[RUNTIME].metrics
    request_id(request, request.app[IDENTIFIER].peer_is_trusted(request))
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects raised by handlers; errors became responses further in
        finish(metrics, request, "gateway", "served", exc.status, started)
        raise
    finish(metrics, request, "gateway", "served", response.status, started)
    return response
