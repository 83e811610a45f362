"""Forward-auth mode: ``{prefix}/auth`` answers a proxy's question "may this request pass?".

* nginx ``auth_request`` and ingress-nginx send ``X-Original-URL`` and ``X-Original-Method``; a challenge is a
  401 whose ``Location`` header the proxy turns into the redirect (see config/nginx.conf).
* Traefik ``forwardAuth`` and Caddy ``forward_auth`` send ``X-Forwarded-Method/Proto/Host/Uri``; a challenge is a
  302 for browsers and a 401 for API clients.

Those headers are believed only from ``trusted_proxies``: from anyone else there is no target and the answer is
403 ``untrusted_proxy``. A target that cannot be determined (no or both dialects' headers, a path that is not
absolute or is ambiguous) is 403 ``invalid_target``; a target whose host is not a plain ``host[:port]`` (the
authority of ``X-Original-URL``, or ``X-Forwarded-Host``: missing, sent twice, userinfo, a bad port...) is 400
``invalid_host``, like the same host in proxy mode; an identity header sent twice is 400
``duplicate_identity_header``. On every 2xx every configured identity header is present exactly once (empty for
``bypass``), so a copy the client sent can never survive into the app.

With ``forward_auth.cache_ttl`` an allowed answer for a session may be marked reusable by the proxy that asked
(``X-Accel-Expires`` for nginx, ``Cache-Control: private, max-age`` for the rest), for as long as
``core.decision.reusable_for`` allows; every other answer says ``X-Accel-Expires: 0`` and ``Cache-Control:
no-store``. The proxy's cache key must hold everything the decision reads (config/nginx.conf says what and why).
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from multidict import CIMultiDict

from mfa_gateway.core.decision import Allow, Challenge, label_of
from mfa_gateway.core.errors import BadRequest, InvalidHost, MfaError
from mfa_gateway.runtime.metrics import Metrics
from mfa_gateway.web.encoded import EncodedAnswer, EncodedLines, encode_lines
from mfa_gateway.web.errors import API_CSP, error_response, json_error, log_unavailable
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.headers import IDENTITY_CACHE_SIZE, Pairs, UpstreamHeaders
from mfa_gateway.web.html import SECURITY_HEADERS
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.observe import finish
from mfa_gateway.web.refusals import Refusals
from mfa_gateway.web.request_ids import assign_request_id, request_id

log = logging.getLogger("mfa_gateway")
ACCEL_EXPIRES = "X-Accel-Expires"
ANSWER_HEADERS = {ACCEL_EXPIRES: "0", **SECURITY_HEADERS, "Content-Security-Policy": API_CSP}
"""On every answer of ``{prefix}/auth`` that a proxy may not reuse: the gateway's security headers (as the
sub-application's middleware puts them on its other routes), ``Cache-Control: no-store`` among them, and
``X-Accel-Expires: 0``, which nginx obeys before anything else (even a ``proxy_cache_valid`` that would keep it)."""
_AUTHORITY_END = re.compile(r"[/?#]")


def forwarded_target(request: web.Request, gate: Gate) -> tuple[Target, bool] | None:
    """The request the proxy asks about, and whether it speaks the nginx dialect; None if there is none.

    Caddy and Traefik pass the client's own headers on to the auth request, so a client can add an
    ``X-Original-URL`` of its choosing; nginx can likewise pass a client's ``X-Forwarded-Uri``. With
    ``forward_auth.dialect: auto`` a request carrying both families is therefore refused, and a fixed dialect
    ignores the other family altogether. The target's host is read before anything else about it: one that is not
    a plain ``host[:port]`` raises :class:`InvalidHost`.
    """
    dialect = gate.settings.forward_auth.dialect
    original_url = request.headers.get("X-Original-URL") if dialect in ("auto", "nginx") else None
    forwarded_uri = request.headers.get("X-Forwarded-Uri") if dialect in ("auto", "traefik") else None
    if original_url is not None and forwarded_uri is not None:
        return None
    if original_url is not None:
        target = _original_url_target(gate, original_url, request.headers.get("X-Original-Method", "GET"))
        return None if target is None else (target, True)
    if not forwarded_uri or not forwarded_uri.startswith("/"):
        return None
    hosts = request.headers.getall("X-Forwarded-Host", ())
    if len(hosts) != 1:
        raise InvalidHost()
    host = hosts[0]
    gate.host(host)
    path, _, query = forwarded_uri.partition("?")
    proto = request.headers.get("X-Forwarded-Proto", "https").split(",")[0].strip().lower()
    method = request.headers.get("X-Forwarded-Method", "GET").upper()
    return Target(method, proto if proto in ("http", "https") else "https", host, gate.normalise(path), query), False


def _original_url_target(gate: Gate, original_url: str, method: str) -> Target | None:
    """nginx's ``X-Original-URL``: its authority is cut out and read here, not by ``urlsplit``, which would accept
    userinfo and silently drop tabs, and must then agree with what ``urlsplit`` saw. A pure function of the URL and
    the method (``X-Original-Method``)."""
    scheme, separator, rest = original_url.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return None
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    gate.host(authority)
    try:
        parts = urlsplit(original_url)
    except ValueError:
        return None
    if parts.netloc != authority or not parts.path.startswith("/"):
        return None
    return Target(method.upper(), parts.scheme, authority, gate.normalise(parts.path), parts.query)


class ForwardAuth:
    """The handler of ``{prefix}/auth`` (``ForwardAuth.handle``), on the root application beside the ``{prefix}``
    sub-application rather than inside it: a proxy asks once per request of its own, so this route does for itself
    what the sub-application's middlewares do for the pages and the API (request id, metric sample and access event,
    security headers, errors as JSON answers), without their layers and per-request application lookups. A fault
    inside the decision denies: a 500 ``internal_error`` without detail, or the error's own 4xx/503."""

    def __init__(
        self, gate: Gate, identifier: Identifier, refusals: Refusals, headers: UpstreamHeaders, metrics: Metrics
    ) -> None:
        self._gate = gate
        self._identifier = identifier
        self._refusals = refusals
        self._headers = headers
        self._metrics = metrics
        self._reuse = gate.settings.forward_auth.cache_ttl
        self._allowed: dict[Pairs, tuple[CIMultiDict[str], EncodedLines]] = {}  # by identity headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        user = client_ip = None
        try:
            peer = self._identifier.judge_peer(request)
            client_ip = peer.client_ip
            assign_request_id(request, peer.trusted)  # before anything can fail, so every outcome logs the same id
            response, label, user = self._answer(request, peer.trusted, client_ip)
        except MfaError as error:  # a host or identity header that does not read, a dependency down: refused
            request_id(request, False)  # the one assigned above, or a new one if the peer could not be judged
            log_unavailable(error)
            response, label = secured(error_response(error)), error.code
        except Exception:
            request_id(request, False)
            log.exception("unhandled error deciding a forward-auth request")
            response, label = secured(json_error(500, "internal_error", "Internal error.")), "internal_error"
        finish(self._metrics, request, "forward_auth", label, response.status, started, user, client_ip)
        return response

    def _answer(
        self, request: web.Request, peer_trusted: bool, client_ip: str | None
    ) -> tuple[web.StreamResponse, str, str | None]:
        """The answer, the decision's label and the user it names."""
        if not peer_trusted:
            refused = json_error(403, "untrusted_proxy", "Forward-auth answers only trusted proxies.")
            return secured(refused), "untrusted_proxy", None
        gate = self._gate
        gate.refuse_duplicated_identity(request, peer_trusted=True)
        try:
            found = forwarded_target(request, gate)
        except InvalidHost:
            raise  # 400, as in proxy mode
        except BadRequest:
            found = None  # an ambiguous path is denied, never waved through
        if found is None:
            refused = json_error(403, "invalid_target", "The request to authorise could not be determined.")
            return secured(refused), "invalid_target", None
        target, nginx = found
        outcome = gate.evaluate(request, target, client_ip, self._reuse)
        decision = outcome.decision
        label = label_of(decision)
        if isinstance(decision, Allow):
            headers, encoded = self._allowed_headers(self._headers.identity_headers(decision))
            response: web.StreamResponse
            if outcome.refreshed is not None:  # never on a reusable answer (Gate.evaluate)
                response = web.Response(headers=headers)
                gate.write_refreshed(response, outcome)
            elif outcome.reusable:
                response = EncodedAnswer(encode_lines(reusable(headers, outcome.reusable, nginx).items()))
            else:
                response = EncodedAnswer(encoded)
            return response, label, decision.user_id
        user = decision.user_id if isinstance(decision, Challenge) else None
        refusal = self._refusals.answer(request, decision, target)
        if nginx and isinstance(decision, Challenge) and refusal.status in (301, 302, 303):
            # auth_request passes only 2xx, 401 and 403 on: the redirect travels in the Location header of a 401.
            location = {"Location": refusal.headers["Location"]}
            refusal = json_error(401, label, "Sign-in required.", location)  # mfa_required or unauthenticated
        return secured(refusal), label, user

    def _allowed_headers(self, identity: Pairs) -> tuple[CIMultiDict[str], EncodedLines]:
        """An allowed answer's headers, the security headers and every identity header, and the same encoded
        (``encoded.encode_lines``): built once per identity."""
        known = self._allowed.get(identity)
        if known is None:
            headers = CIMultiDict({hdrs.CONTENT_TYPE: "text/plain; charset=utf-8", **ANSWER_HEADERS})
            headers.extend(identity)
            known = (headers, encode_lines(headers.items()))
            if len(self._allowed) >= IDENTITY_CACHE_SIZE:
                self._allowed.clear()
            self._allowed[identity] = known
        return known


def reusable(headers: CIMultiDict[str], seconds: int, nginx: bool) -> CIMultiDict[str]:
    """An allowed answer's ``headers``, marked reusable for ``seconds``: ``X-Accel-Expires`` for nginx, first (nginx
    1.22 obeys it only ahead of a ``Cache-Control``), and ``Cache-Control: private, max-age`` (only the proxy that
    asked may keep it; nginx keeps no answer that says ``private`` without ``X-Accel-Expires``)."""
    marked: CIMultiDict[str] = CIMultiDict()
    if nginx:
        marked[ACCEL_EXPIRES] = str(seconds)
    marked[hdrs.CACHE_CONTROL] = f"private, max-age={seconds}"
    marked.extend((name, value) for name, value in headers.items() if name not in (ACCEL_EXPIRES, hdrs.CACHE_CONTROL))
    return marked


def secured(response: web.Response) -> web.Response:
    """``response`` with the security headers it does not set itself."""
    headers = response.headers
    for name, value in ANSWER_HEADERS.items():
        headers.setdefault(name, value)
    return response
