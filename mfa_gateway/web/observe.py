"""What every request leaves behind: a metric sample and, at log level info, one structured access event.

Both are written in one place, after the response is ready, with labels from small fixed sets (route class and
decision). The access event carries the request id, method, the path without its query string (queries carry
tokens), status, decision, user where known and latency; never a header, cookie or body.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time

from aiohttp import web

from mfa_gateway.core.decision import Allow, Challenge, ChallengeKind, Decision
from mfa_gateway.core.policy import Action
from mfa_gateway.metrics import Metrics
from mfa_gateway.web.errors import Handler
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME

access_log = logging.getLogger("mfa_gateway.access")
REQUEST_ID = web.RequestKey("request_id", str)
STARTED = web.RequestKey("started", float)
ROUTE = web.RequestKey("route", str)
DECISION = web.RequestKey("decision", str)
_REQUEST_ID_HEADER = "X-Request-Id"


def decision_label(decision: Decision) -> str:
    if isinstance(decision, Allow):
        return "bypass" if decision.rule.action is Action.BYPASS else "allow"
    if isinstance(decision, Challenge):
        return "mfa_required" if decision.kind is ChallengeKind.MFA else "unauthenticated"
    return "deny"


_PROCESS_TAG = secrets.token_hex(4)
_SEQUENCE = itertools.count()


def _new_request_id() -> str:
    """A correlation id, not a secret: a random tag per process and a counter (no system call per request)."""
    return f"{_PROCESS_TAG}{next(_SEQUENCE) & 0xFFFFFFFF:08x}"


def request_id(request: web.Request, peer_trusted: bool) -> str:
    """The id to log and pass upstream: a trusted proxy's ``X-Request-Id`` (if sane), else a new one."""
    try:
        return request[REQUEST_ID]
    except KeyError:
        pass
    given = request.headers.get(_REQUEST_ID_HEADER, "") if peer_trusted else ""
    value = given if 0 < len(given) <= 128 and given.isprintable() and " " not in given else _new_request_id()
    request[REQUEST_ID] = value
    return value


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
                "request_id": request.get(REQUEST_ID) or _new_request_id(),
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
    """The gateway's own routes (pages, API, forward-auth, health): route class ``gateway`` unless a handler names
    one (forward-auth sets ``forward_auth`` and its decision)."""
    started = request[STARTED] = time.perf_counter()
    metrics = request.app[RUNTIME].metrics
    request_id(request, request.app[IDENTIFIER].peer_is_trusted(request))
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects raised by handlers; errors became responses further in
        finish(metrics, request, request.get(ROUTE, "gateway"), request.get(DECISION, "served"), exc.status, started)
        raise
    finish(metrics, request, request.get(ROUTE, "gateway"), request.get(DECISION, "served"), response.status, started)
    return response
