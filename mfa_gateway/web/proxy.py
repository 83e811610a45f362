"""Reverse-proxy mode: every request outside ``{prefix}`` passes the gate, then goes to the app."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from mfa_gateway.core.decision import Allow
from mfa_gateway.web import cookies, csrf
from mfa_gateway.web.cookie_header import cookie_header
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.identity import Identifier
from mfa_gateway.web.keys import GATE, IDENTIFIER, RUNTIME, UPSTREAM
from mfa_gateway.web.upstream import hop_by_hop


def target_of(request: web.Request, gate: Gate, peer_trusted: bool) -> Target:
    path, _, query = request.raw_path.partition("?")
    scheme = request.scheme
    if peer_trusted:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip().lower() or scheme
    return Target(request.method, scheme, request.host, gate.normalise(path), query)


def upstream_headers(request: web.Request, gate: Gate, identifier: Identifier, allow: Allow | None) -> CIMultiDict[str]:
    settings = gate.settings
    peer_trusted = identifier.peer_is_trusted(request)
    headers = CIMultiDict(request.headers)
    for name in hop_by_hop(request.headers) | {"expect"}:
        headers.popall(name, None)
    gate.stripper.strip(headers, peer_trusted=peer_trusted)
    headers.popall("Cookie", None)
    own = (settings.session.cookie_name, cookies.pending_cookie_name(settings), csrf.cookie_name(settings))
    if kept := cookie_header(request).without(own):
        headers["Cookie"] = kept  # exactly the pairs the gateway read, so the app cannot read others
    peer = request.remote or ""
    forwarded_for = headers.popall("X-Forwarded-For", []) if peer_trusted else []
    headers["X-Forwarded-For"] = ", ".join([*forwarded_for, peer]) if forwarded_for else peer
    if not peer_trusted or "X-Forwarded-Proto" not in headers:
        headers["X-Forwarded-Proto"] = request.scheme
    if not peer_trusted or "X-Forwarded-Host" not in headers:
        headers["X-Forwarded-Host"] = request.host
    upstream = settings.upstream
    if not upstream.preserve_host and upstream.url:
        headers["Host"] = upstream.url.split("://", 1)[1]
    if allow is not None and allow.user_id:
        for name, value in gate.identity_headers(allow):
            if value:
                headers[name] = value
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    from mfa_gateway.web.interception import intercept_login, is_login_post

    gate = request.app[GATE]
    identifier = request.app[IDENTIFIER]
    target = target_of(request, gate, identifier.peer_is_trusted(request))
    if is_login_post(request, gate.settings, target):
        return await intercept_login(request, target)
    outcome = gate.evaluate(request, target, identifier.client_ip(request))
    decision = outcome.decision
    if not isinstance(decision, Allow):
        return gate.refusal(request, decision, target)
    headers = upstream_headers(request, gate, identifier, decision)
    upstream = request.app[UPSTREAM]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await upstream.bridge_websocket(request, target.relative_url, headers)

    def decorate(response: web.StreamResponse) -> None:
        if outcome.refreshed is not None:
            runtime = request.app[RUNTIME]
            cookies.set_session(
                response, gate.settings, runtime.keys.session_keyring, outcome.refreshed, runtime.clock()
            )

    return await upstream.forward(request, target.relative_url, headers, decorate=decorate)
