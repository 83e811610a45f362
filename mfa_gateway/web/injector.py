"""The injector's HTTPS server: the mutating admission webhook (``mfa-gateway injector``).

One port, TLS only (the API server calls webhooks over HTTPS and nothing else may):

* ``POST /mutate``: an ``admission.k8s.io/v1`` AdmissionReview (``application/json``, at most ``MAX_REVIEW_BYTES``)
  answered by :func:`mfa_gateway.k8s.admission.review`; a body that is not a readable review is ``400
  malformed_review``, never an answer that lets the pod through;
* ``GET /healthz``: liveness, always 200 while the process serves;
* ``GET /readyz``: 200 once a serving certificate is loaded, 503 before (a handshake then fails anyway).

Errors are the gateway's JSON shape (``{"success": false, "error", "code"}``, 404 and 405 included), answered by the
gateway's error middleware and request handler. One log line per review: its uid, namespace, kind, the pod's name and
the result; never the pod's spec.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from mfa_gateway.k8s.admission import MalformedReview, review
from mfa_gateway.runtime.injector import InjectorRuntime
from mfa_gateway.web.bodies import InvalidJson, UnsupportedMediaType, parse_json_object, read_body
from mfa_gateway.web.errors import error_middleware, security_headers
from mfa_gateway.web.server import listen

log = logging.getLogger("mfa_gateway.injector")
INJECTOR = web.AppKey("injector", InjectorRuntime)
MAX_REVIEW_BYTES = 4 * 1024 * 1024
"""A review holds one Pod (at most 1.5 MiB in etcd) and, for an update, the old one: 4 MiB is room for both."""
REVIEW_DEPTH = 64
"""How deep a review may nest: a Pod's managedFields and affinity terms go well past the API's 16 levels."""
KEEPER_STOP_WAIT = 5.0

routes = web.RouteTableDef()


@routes.post("/mutate")
async def mutate(request: web.Request) -> web.Response:
    runtime = request.app[INJECTOR]
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the AdmissionReview as application/json.", code="json_required")
    raw = await read_body(request, MAX_REVIEW_BYTES)
    try:
        reviewed = review(_document(raw), runtime.injection)
    except MalformedReview as exc:
        log.warning("refused a malformed admission review: %s", exc.message, extra={"uid": exc.uid or ""})
        raise
    fields = {"uid": reviewed.uid, "namespace": reviewed.namespace, "kind": reviewed.kind, "pod": reviewed.name}
    log.info("admission review: %s", reviewed.result, extra={**fields, "result": reviewed.result})
    return web.json_response(reviewed.answer)


def _document(raw: bytes) -> dict[str, Any]:
    try:
        return parse_json_object(raw, max_depth=REVIEW_DEPTH)
    except InvalidJson as exc:
        raise MalformedReview(exc.message) from None


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    ready = request.app[INJECTOR].certificate.loaded
    checks = {"certificate": "ok" if ready else "unavailable"}
    return web.json_response(
        {"status": "ready" if ready else "unready", "checks": checks}, status=200 if ready else 503
    )


def create_injector_app(runtime: InjectorRuntime) -> web.Application:
    app = web.Application(middlewares=[security_headers, error_middleware], client_max_size=MAX_REVIEW_BYTES)
    app[INJECTOR] = runtime
    app.add_routes(routes)
    app.cleanup_ctx.append(_keeper(runtime))
    return app


def _keeper(runtime: InjectorRuntime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def keep(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.keeper(stop), name="certificate-keeper")
        yield
        stop.set()
        done, _ = await asyncio.wait([task], timeout=KEEPER_STOP_WAIT)
        if not done:
            task.cancel()

    return keep


async def run_injector(runtime: InjectorRuntime, stop: asyncio.Event) -> None:
    """Serve on ``listen`` until ``stop`` is set, then finish in-flight reviews and close."""
    where = runtime.config.listen
    app = create_injector_app(runtime)
    runner = await listen(app, "listen.port", where.host, where.port, ssl_context=runtime.certificate.context)
    log.info("mfa-gateway injector listening on https://%s:%d", where.host, where.port)
    await stop.wait()
    log.info("shutting down: finishing in-flight reviews")
    await runner.cleanup()


def serve_injector(runtime: InjectorRuntime) -> None:
    """Serve until SIGTERM or SIGINT."""

    async def serving() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_injector(runtime, stop)

    asyncio.run(serving())
