"""Reverse-proxy mode: every request outside ``{prefix}`` passes the gate, then goes to the app."""

from __future__ import annotations

import functools
import logging
import time

from aiohttp import web

from mfa_gateway.core.decision import Allow, Challenge, label_of
from mfa_gateway.core.errors import MfaError
from mfa_gateway.runtime.metrics import Metrics
from mfa_gateway.web import html
from mfa_gateway.web.errors import error_response, json_error, log_unavailable
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.headers import UpstreamHeaders
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.interception import intercept_login, is_login_post
from mfa_gateway.web.observe import finish
from mfa_gateway.web.refusals import Refusals
from mfa_gateway.web.request_ids import assign_request_id
from mfa_gateway.web.upstream import Upstream, UpstreamError

log = logging.getLogger("mfa_gateway")


def target_of(request: web.Request, gate: Gate, peer_trusted: bool) -> Target:
    """The request as policy judges it, read first: a host or identity header that does not read raises (400)."""
    host = gate.request_host(request, peer_trusted)
    gate.refuse_duplicated_identity(request, peer_trusted)
    path, _, query = request.raw_path.partition("?")
    scheme = request.scheme
    if peer_trusted:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip().lower() or scheme
    return Target(request.method, scheme, host, gate.normalise(path), query)


class Proxy:
    """The handler for every path outside ``{prefix}`` (``Proxy.handle``), holding what it needs so the hot path
    looks nothing up per request. Errors become answers here (no middleware on the hot path): an unreachable app is
    502/504, a refused request a 4xx, a dependency down 503, any other fault before the app is asked a 500; as a page
    for browsers and JSON for the rest."""

    def __init__(
        self,
        gate: Gate,
        refusals: Refusals,
        headers: UpstreamHeaders,
        identifier: Identifier,
        upstream: Upstream,
        metrics: Metrics,
    ) -> None:
        self._gate = gate
        self._refusals = refusals
        self._headers = headers
        self._identifier = identifier
        self._upstream = upstream
        self._metrics = metrics
        self._intercepts = gate.settings.identity.source == "upstream_login"  # else no request is a login to hold

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        peer = self._identifier.judge_peer(request)
        assign_request_id(request, peer.trusted)  # before anything can fail, so every outcome logs the same id
        answering = False  # once the request is handed to the app, an unexpected error cannot become a new answer
        try:
            gate = self._gate
            target = target_of(request, gate, peer.trusted)
            if self._intercepts and is_login_post(request, gate.settings, target):
                response = await intercept_login(request, target)
                finish(self._metrics, request, "proxy", "login", response.status, started, None, peer.client_ip)
                return response
            outcome = gate.evaluate(request, target, peer.client_ip)
            decision = outcome.decision
            label = label_of(decision)
            if not isinstance(decision, Allow):
                refusal = self._refusals.answer(request, decision, target)
                user = decision.user_id if isinstance(decision, Challenge) else None
                finish(self._metrics, request, "proxy", label, refusal.status, started, user, peer.client_ip)
                return refusal
            headers = self._headers.for_upstream(request, peer, decision)
            answering = True
            if request.headers.get("Upgrade", "").lower() == "websocket":
                response = await self._upstream.bridge_websocket(request, target.relative_url, headers)
            else:
                refreshed = outcome.refreshed
                decorate = None if refreshed is None else functools.partial(gate.write_refreshed, outcome=outcome)
                response = await self._upstream.forward(request, target.relative_url, headers, decorate=decorate)
            finish(self._metrics, request, "proxy", label, response.status, started, decision.user_id, peer.client_ip)
            return response
        except UpstreamError as exc:
            log.warning("upstream error on %s: %s", request.method, exc)
            kind = "timeout" if exc.status == 504 else "unavailable"
            self._metrics.upstream_errors.labels(kind).inc()
            title = "The application is not answering" if exc.status == 504 else "The application is unavailable"
            error = json_error(exc.status, "upstream_" + kind, title + ".")
            answer = self._answer(request, error, title, "Please try again in a moment.")
            finish(self._metrics, request, "proxy", "upstream_" + kind, exc.status, started, None, peer.client_ip)
            return answer
        except MfaError as error:  # an ambiguous path or host, a dependency down: refused, never passed on
            log_unavailable(error)
            answer = self._answer(request, error_response(error), "Request refused", error.message)
            finish(self._metrics, request, "proxy", error.code, answer.status, started, None, peer.client_ip)
            return answer
        except Exception:
            if answering:
                raise  # the app's answer has begun: aiohttp logs it and closes the connection
            # A fault inside the decision denies: a 500 without detail (the traceback goes to the log only).
            log.exception("unhandled error deciding %s", request.method)
            internal = json_error(500, "internal_error", "Internal error.")
            answer = self._answer(request, internal, "Internal error", "The request could not be handled.")
            finish(self._metrics, request, "proxy", "internal_error", 500, started, None, peer.client_ip)
            return answer

    def _answer(self, request: web.Request, response: web.Response, title: str, text: str) -> web.Response:
        """``response`` for API clients; for browsers, a page with the same status (and ``Retry-After``)."""
        if not html.wants_html(request):
            return response
        page = self._refusals.message_page(response.status, title, text)
        page.headers.update({k: v for k, v in response.headers.items() if k == "Retry-After"})
        return page
