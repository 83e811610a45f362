"""Remembered devices, the HTTP side: which rule a return target falls under, the stand-in, the device cookie.

The stand-in happens on the challenge page (``GET {prefix}/challenge``), where the gate sends every browser that
needs MFA, in proxy and in forward-auth mode alike, and where a held application login or a builtin sign-in waits
for its second factor too. So the gate's hot path and ``{prefix}/auth`` do not change and never read the store: a
browser with a remembered device is sent on to where it was going with a stepped-up session, its code skipped.

Which rule applies is judged here, from the return target (``rd``, already checked by ``safe_redirect``), the way
the gate will judge the request the browser makes next: its host, the normalised path, ``GET``, the client's
address. A target the gate could not read, or one of the gateway's own pages (which always ask for a real second
factor), has no rule here: no device is offered or used. The client sends a wish (a ticked box, ``rememberDevice``),
never an age: the age is always the rule's.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from mfa_gateway.core.devices import DeviceMfa, device_age, device_label, token_hash, well_formed
from mfa_gateway.core.errors import MfaError
from mfa_gateway.core.policy import Rule
from mfa_gateway.service.mfa import Caller
from mfa_gateway.web import cookies
from mfa_gateway.web.cookie_header import request_cookie
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import GATE, IDENTIFIER, RUNTIME


def rule_for(request: web.Request, rd: str) -> Rule | None:
    """The rule the gate will apply to a browser's ``GET rd`` from this client; None when the gate would refuse to
    read it, or it is one of the gateway's own pages."""
    gate = request.app[GATE]
    identifier = request.app[IDENTIFIER]
    try:
        target = urlsplit(rd)
        host = target.netloc or gate.request_host(request, identifier.peer_is_trusted(request))
        path = gate.normalise(target.path or "/")
        own = (gate.settings.prefix + "/").casefold()
        if (path.decoded + "/").casefold().startswith(own):
            return None
        return gate.policy.match(host=host, path=path.decoded, method="GET", client_ip=identifier.client_ip(request))
    except (MfaError, ValueError):
        return None


def offered_age(request: web.Request, rd: str) -> float | None:
    """How long the rule guarding ``rd`` remembers a device; None: it remembers none (no box, no stand-in)."""
    rule = rule_for(request, rd)
    return device_age(rule) if rule is not None else None


def longest_age(request: web.Request) -> float | None:
    """The longest any rule remembers a device (the API has no target to judge); each rule still judges a device
    by its own age when it is used."""
    policy = request.app[GATE].policy
    ages = [age for rule in (*policy.rules, policy.default_rule) if (age := device_age(rule)) is not None]
    return max(ages, default=None)


def first_factor_of(principal: Principal) -> str:
    """How the principal proved who they are (``pwd``, ``hdr``, ``app``, ``jwt``): a grant serves that alone."""
    session = principal.session
    return session.methods[0] if session is not None and session.methods else principal.first_factor.source


def _caller(request: web.Request, user_id: str) -> Caller:
    return Caller(user_id, request.app[IDENTIFIER].limit_key(request))


async def stand_in(request: web.Request, user_id: str, factor: str, age: float) -> DeviceMfa | None:
    """The stand-in for ``user_id``'s second factor if the request's device cookie names a grant of theirs, after
    ``factor``, no older than ``age``; None otherwise (no cookie: nothing is looked up)."""
    token = request_cookie(request, cookies.device_cookie_name(request.app[RUNTIME].settings))
    if not token:
        return None
    return await request.app[RUNTIME].devices.recognise(_caller(request, user_id), token, factor=factor, max_age=age)


async def remember(request: web.Request, response: web.StreamResponse, user_id: str, factor: str, age: float) -> None:
    """Trust this browser for ``age`` seconds (the user just passed MFA and asked) and give it the device cookie;
    a grant of the user that the browser held before is revoked, so one browser holds one grant."""
    runtime = request.app[RUNTIME]
    replacing = request_cookie(request, cookies.device_cookie_name(runtime.settings))
    label = device_label(request.headers.get("User-Agent"))
    trusted = await runtime.devices.trust(
        _caller(request, user_id), factor=factor, age=age, label=label, replacing=replacing
    )
    cookies.set_device(response, runtime.settings, trusted.token, trusted.grant.expires_at - trusted.grant.created_at)


def current_hash(request: web.Request) -> str | None:
    """The hash of the request's device token, if it carries one (the account page marks "this device")."""
    token = request_cookie(request, cookies.device_cookie_name(request.app[RUNTIME].settings))
    return token_hash(token) if token and well_formed(token) else None


def is_current(current: str | None, stored_hash: str) -> bool:
    return current is not None and hmac.compare_digest(current.encode(), stored_hash.encode())
