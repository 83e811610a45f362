"""Reverse-proxy mode: every request outside ``{prefix}`` passes the gate, then goes to the app."""

from __future__ import annotations

import functools
import time

from aiohttp import web
from multidict import CIMultiDict

from mfa_gateway.core.decision import Allow, Challenge
from mfa_gateway.web.cookie_header import cookie_header
from mfa_gateway.web.gate import Gate, Target
from mfa_gateway.web.identity import Peer
from mfa_gateway.web.keys import GATE, IDENTIFIER, UPSTREAM
from mfa_gateway.web.observe import STARTED, decision_label, finish, request_id


def target_of(request: web.Request, gate: Gate, peer_trusted: bool) -> Target:
    path, _, query = request.raw_path.partition("?")
    scheme = request.scheme
    if peer_trusted:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip().lower() or scheme
    return Target(request.method, scheme, request.host, gate.normalise(path), query)


def upstream_headers(request: web.Request, gate: Gate, peer: Peer, allow: Allow | None) -> CIMultiDict[str]:
    headers, forwarded_for = gate.stripper.kept(request.headers, peer_trusted=peer.trusted)
    if kept := cookie_header(request).without(gate.own_cookies):
        headers["Cookie"] = kept  # exactly the pairs the gateway read, so the app cannot read others
    address = request.remote or ""
    headers["X-Forwarded-For"] = ", ".join([*forwarded_for, address]) if forwarded_for else address
    if "X-Forwarded-Proto" not in headers:
        headers["X-Forwarded-Proto"] = request.scheme
    if "X-Forwarded-Host" not in headers:
        headers["X-Forwarded-Host"] = request.host
    if gate.upstream_host is not None:
        headers["Host"] = gate.upstream_host
    if allow is not None and allow.user_id:
        for name, value in gate.identity_headers(allow):
            if value:
                headers[name] = value
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    from mfa_gateway.web.interception import intercept_login, is_login_post

    started = request[STARTED] = time.perf_counter()
    gate = request.app[GATE]
    peer = request.app[IDENTIFIER].peer(request)
    target = target_of(request, gate, peer.trusted)
    if is_login_post(request, gate.settings, target):
        return await intercept_login(request, target)
    outcome = gate.evaluate(request, target, peer.client_ip)
    decision = outcome.decision
    label = decision_label(decision)
    if not isinstance(decision, Allow):
        refusal = gate.refusal(request, decision, target)
        user = decision.user_id if isinstance(decision, Challenge) else None
        finish(request, "proxy", label, refusal.status, started, user, peer.client_ip)
        return refusal
    headers = upstream_headers(request, gate, peer, decision)
    headers["X-Request-Id"] = request_id(request, peer.trusted)
    upstream = request.app[UPSTREAM]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await upstream.bridge_websocket(request, target.relative_url, headers)
    decorate = None if outcome.refreshed is None else functools.partial(gate.write_refreshed, outcome=outcome)
    response = await upstream.forward(request, target.relative_url, headers, decorate=decorate)
    finish(request, "proxy", label, response.status, started, decision.user_id, peer.client_ip)
    return response
