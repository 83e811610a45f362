"""Forward-auth mode: ``{prefix}/auth`` answers a proxy's question "may this request pass?".

* nginx ``auth_request`` and ingress-nginx send ``X-Original-URL`` and ``X-Original-Method``; a challenge is a
  401 whose ``Location`` header the proxy turns into the redirect (see config/nginx.conf).
* Traefik ``forwardAuth`` and Caddy ``forward_auth`` send ``X-Forwarded-Method/Proto/Host/Uri``; a challenge is a
  302 for browsers and a 401 for API clients.

Those headers are believed only from ``trusted_proxies``: from anyone else there is no target and the answer is
403. On every 2xx every configured identity header is present (empty for ``bypass``), so a copy the client sent
can never survive into the app.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from mfa_gateway.core.decision import Allow, Challenge, label_of
from mfa_gateway.core.errors import BadRequest
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.keys import GATE, IDENTIFIER
from mfa_gateway.web.observe import DECISION, ROUTE

routes = web.RouteTableDef()


def forwarded_target(request: web.Request, gate: Gate) -> tuple[Target, bool] | None:
    """The request the proxy asks about, and whether it speaks the nginx dialect; None if there is none.

    Caddy and Traefik pass the client's own headers on to the auth request, so a client can add an
    ``X-Original-URL`` of its choosing; nginx can likewise pass a client's ``X-Forwarded-Uri``. With
    ``forward_auth.dialect: auto`` a request carrying both families is therefore refused, and a fixed dialect
    ignores the other family altogether.
    """
    dialect = gate.settings.forward_auth.dialect
    original_url = request.headers.get("X-Original-URL") if dialect in ("auto", "nginx") else None
    forwarded_uri = request.headers.get("X-Forwarded-Uri") if dialect in ("auto", "traefik") else None
    if original_url is not None and forwarded_uri is not None:
        return None
    if original_url is not None:
        parts = urlsplit(original_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.startswith("/"):
            return None
        method = request.headers.get("X-Original-Method", "GET")
        return Target(method.upper(), parts.scheme, parts.netloc, gate.normalise(parts.path), parts.query), True
    host = request.headers.get("X-Forwarded-Host")
    if not forwarded_uri or not host or not forwarded_uri.startswith("/"):
        return None
    path, _, query = forwarded_uri.partition("?")
    proto = request.headers.get("X-Forwarded-Proto", "https").split(",")[0].strip().lower()
    method = request.headers.get("X-Forwarded-Method", "GET").upper()
    return Target(method, proto if proto in ("http", "https") else "https", host, gate.normalise(path), query), False


@routes.route("*", "/auth")
async def auth(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "forward_auth"
    gate = request.app[GATE]
    identifier = request.app[IDENTIFIER]
    if not identifier.peer_is_trusted(request):
        return json_error(403, "untrusted_proxy", "Forward-auth answers only trusted proxies.")
    try:
        found = forwarded_target(request, gate)
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
        for name, value in gate.identity_headers(decision):
            response.headers[name] = value
        gate.write_refreshed(response, outcome)
        return response
    refusal = gate.refusal(request, decision, target)
    if nginx and isinstance(decision, Challenge) and refusal.status in (301, 302, 303):
        # auth_request passes only 2xx, 401 and 403 on: the redirect travels in the Location header of a 401.
        code = request[DECISION]  # mfa_required or unauthenticated, as label_of named it
        return json_error(401, code, "Sign-in required.", {"Location": refusal.headers["Location"]})
    return refusal
