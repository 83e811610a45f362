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
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from mfa_gateway.core.decision import Allow, Challenge, label_of
from mfa_gateway.core.errors import BadRequest, InvalidHost
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.keys import GATE, HEADERS, IDENTIFIER, REFUSALS
from mfa_gateway.web.observe import DECISION, ROUTE

routes = web.RouteTableDef()
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
        return _original_url_target(request, gate, original_url)
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


def _original_url_target(request: web.Request, gate: Gate, original_url: str) -> tuple[Target, bool] | None:
    """nginx's ``X-Original-URL``: its authority is cut out and read here, not by ``urlsplit``, which would accept
    userinfo and silently drop tabs, and must then agree with what ``urlsplit`` saw."""
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
    method = request.headers.get("X-Original-Method", "GET")
    return Target(method.upper(), parts.scheme, authority, gate.normalise(parts.path), parts.query), True


@routes.route("*", "/auth")
async def auth(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "forward_auth"
    gate = request.app[GATE]
    identifier = request.app[IDENTIFIER]
    if not identifier.peer_is_trusted(request):
        return json_error(403, "untrusted_proxy", "Forward-auth answers only trusted proxies.")
    gate.refuse_duplicated_identity(request, peer_trusted=True)
    try:
        found = forwarded_target(request, gate)
    except InvalidHost:
        raise  # 400, as in proxy mode
    except BadRequest:
        found = None  # an ambiguous path is denied, never waved through
    if found is None:
        return json_error(403, "invalid_target", "The request to authorise could not be determined.")
    target, nginx = found
    outcome = gate.evaluate(request, target, identifier.client_ip(request))
    decision = outcome.decision
    request[DECISION] = label_of(decision)
    if isinstance(decision, Allow):
        response = web.Response(status=200, text="")
        for name, value in request.app[HEADERS].identity_headers(decision):
            response.headers[name] = value
        gate.write_refreshed(response, outcome)
        return response
    refusal = request.app[REFUSALS].answer(request, decision, target)
    if nginx and isinstance(decision, Challenge) and refusal.status in (301, 302, 303):
        # auth_request passes only 2xx, 401 and 403 on: the redirect travels in the Location header of a 401.
        code = request[DECISION]  # mfa_required or unauthenticated, as label_of named it
        return json_error(401, code, "Sign-in required.", {"Location": refusal.headers["Location"]})
    return refusal
