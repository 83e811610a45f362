"""The admin listener, on its own port (``admin.host``/``admin.port``), never exposed to users.

``POST /admin/secrets/refresh`` (only when ``admin.token`` is set; bearer token) re-reads every secret now.
``POST /admin/users/reset`` (likewise) is ``mfa-gateway users reset`` for a gateway whose sessions and lockouts live
in its own memory (``state.backend: memory``), which no other process can reach.

``GET /metrics`` answers in the Prometheus text format: every worker's counters and histograms, plus gauges measured
at scrape time by this process (store, Redis and revocation-feed health). It is served by one process per replica
(the first worker), which merges the samples of all of them.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mfa_gateway.core.errors import BadRequest, DependencyUnavailable
from mfa_gateway.core.users import canonical_user
from mfa_gateway.runtime import Runtime, longest_session
from mfa_gateway.runtime.metrics import Gauges
from mfa_gateway.service.account import reset_everywhere
from mfa_gateway.web.api import read_json
from mfa_gateway.web.errors import error_middleware, json_error, security_headers
from mfa_gateway.web.health import PING_TIMEOUT
from mfa_gateway.web.keys import RUNTIME

Refresh = Callable[[], Awaitable[None]]
REFRESH: web.AppKey[Refresh] = web.AppKey("refresh_secrets")
FAILURES: web.AppKey[list[float]] = web.AppKey("admin_token_failures")
TOKEN_FAILURE_LIMIT = 5
TOKEN_FAILURE_WINDOW = 60.0
"""At most 5 wrong admin tokens a minute per process; beyond, every attempt is refused (429) until they age out."""


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
    families: list[Metric] = [up, feed, *_secret_families(runtime)]
    try:
        pending = await asyncio.wait_for(runtime.state.count_challenges(runtime.clock()), PING_TIMEOUT)
    except (DependencyUnavailable, TimeoutError):
        pass  # state unavailable: dependency_up says so; no made-up count
    else:
        families.append(
            GaugeMetricFamily(
                "mfa_gateway_challenges_pending",
                "Sign-ins waiting for their second factor (every replica).",
                value=float(pending),
            )
        )
    body = runtime.metrics.exposition(Gauges(families))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _secret_families(runtime: Runtime) -> list[Metric]:
    """Per secret (labelled by its config key, never by value): age, staleness, usability, fetch outcomes; and the
    primary key id of each keyring, so a rotation can be watched reaching every replica."""
    age = GaugeMetricFamily(
        "mfa_gateway_secret_age_seconds", "Seconds since the backend confirmed a secret.", labels=["secret"]
    )
    stale = GaugeMetricFamily(
        "mfa_gateway_secret_stale", "1 while a secret is served stale (backend failing transiently).", labels=["secret"]
    )
    usable = GaugeMetricFamily("mfa_gateway_secret_usable", "1 when a secret can be served.", labels=["secret"])
    fetches = CounterMetricFamily(
        "mfa_gateway_secret_fetches", "Secret refreshes by result (this process).", labels=["secret", "result"]
    )
    for name, status in runtime.secret_status():
        age.add_metric([name], status.age if status.age is not None else float("nan"))
        stale.add_metric([name], 1.0 if status.stale else 0.0)
        usable.add_metric([name], 1.0 if status.usable else 0.0)
        for result, count in status.fetches.items():
            fetches.add_metric([name, result], float(count))
    primary = GaugeMetricFamily(
        "mfa_gateway_keyring_primary", "1 for the key id each keyring encrypts with.", labels=["keyring", "kid"]
    )
    for keyring_name in ("keyring", "session_keyring"):
        try:
            kid = getattr(runtime.keys, keyring_name).primary
        except DependencyUnavailable:
            continue
        primary.add_metric([keyring_name, kid], 1.0)
    return [age, stale, usable, fetches, primary]


def _refused(request: web.Request) -> web.Response | None:
    """None when the request carries ``Authorization: Bearer <admin.token>``; else the answer refusing it."""
    runtime = request.app[RUNTIME]
    failures = request.app[FAILURES]
    now = runtime.clock()
    failures[:] = [at for at in failures if now - at < TOKEN_FAILURE_WINDOW]
    if len(failures) >= TOKEN_FAILURE_LIMIT:  # guessing: every attempt waits, the right token too
        retry = int(TOKEN_FAILURE_WINDOW - (now - failures[0])) + 1
        return json_error(
            429, "locked_out", "Too many wrong admin tokens; try again later.", {"Retry-After": str(retry)}
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    try:
        expected = runtime.admin_token().reveal()
    except DependencyUnavailable:
        return json_error(503, "dependency_unavailable", "The admin token cannot be read right now.")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        failures.append(now)
        return json_error(401, "invalid_token", "A valid admin bearer token is required.")
    return None


async def refresh_secrets(request: web.Request) -> web.Response:
    """Re-read every secret now (after a rotation). Needs ``Authorization: Bearer <admin.token>``."""
    if (refused := _refused(request)) is not None:
        return refused
    runtime = request.app[RUNTIME]
    await request.app[REFRESH]()
    statuses = runtime.secret_status()
    unusable = [status for _, status in statuses if not status.usable]
    return web.json_response(
        {
            "success": not unusable,
            "data": {
                "secrets": [
                    {"secret": name, "usable": s.usable, "stale": s.stale, "source": s.source} for name, s in statuses
                ]
            },
        },
        status=200 if not unusable else 503,
    )


async def reset_user(request: web.Request) -> web.Response:
    """``users reset`` reaching a gateway whose state is in its memory: ``{"user": NAME}`` (bearer token as above).
    The user's sessions and tokens are revoked, the enrollment deleted and lockouts lifted, audited."""
    if (refused := _refused(request)) is not None:
        return refused
    body = await read_json(request)
    name = body.get("user")
    if not isinstance(name, str):
        raise BadRequest("'user' must be a user name.", code="invalid_field")
    runtime = request.app[RUNTIME]
    user_id = canonical_user(name)
    deleted = await reset_everywhere(
        runtime.mfa,
        runtime.revocations,
        runtime.devices,
        user_id,
        longest_session=longest_session(runtime.settings),
        via="admin",
    )
    return web.json_response({"success": True, "data": {"user": user_id, "enrollmentDeleted": deleted}})


def create_admin_app(runtime: Runtime, refresh: Refresh | None = None) -> web.Application:
    """``refresh`` re-reads the secrets everywhere (with ``--workers``, in every worker); default: this process."""
    app = web.Application(middlewares=[security_headers, error_middleware])
    app[RUNTIME] = runtime
    app[REFRESH] = refresh or runtime.refresh_secrets
    app[FAILURES] = []
    app.router.add_get("/metrics", metrics)
    if runtime.settings.admin.token is not None:
        app.router.add_post("/admin/secrets/refresh", refresh_secrets)
        app.router.add_post("/admin/users/reset", reset_user)
    return app
