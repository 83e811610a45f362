"""Login interception (``identity.source: upstream_login``): MFA in front of an app's own login form.

The gateway forwards the app's login POST unchanged. A failed login (anything but a configured success status with
a ``Set-Cookie`` of the app's session cookie) passes back untouched. A successful one is *held*: its status,
headers (with the app's session cookie) and body are sealed into a pending challenge, and the browser is sent to
the MFA challenge (or to enrollment). Only after MFA succeeds does the gateway release the app's response, together
with a step-up session bound to a hash of the app's session cookie.
"""

from __future__ import annotations

import json
import logging
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from mfa_gateway.config import Settings
from mfa_gateway.core.decision import Deny, decide
from mfa_gateway.core.model import AuditEvent
from mfa_gateway.core.redirects import safe_redirect
from mfa_gateway.core.session import binding_of
from mfa_gateway.core.users import canonical_user
from mfa_gateway.service.pending import HeldResponse, Pending
from mfa_gateway.web import cookies
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.gate import Target
from mfa_gateway.web.keys import GATE, IDENTIFIER, RUNTIME, UPSTREAM
from mfa_gateway.web.upstream import UpstreamError, hop_by_hop

log = logging.getLogger("mfa_gateway.interception")


def is_login_post(request: web.Request, settings: Settings, target: Target) -> bool:
    login = settings.identity.upstream_login
    return (
        settings.identity.source == "upstream_login"
        and login is not None
        and target.method == "POST"
        and target.path.decoded == login.login_path
    )


def submitted_username(body: bytes, content_type: str, field: str) -> str | None:
    try:
        if content_type == "application/json":
            value = json.loads(body).get(field)
            return value if isinstance(value, str) else None
        if content_type == "application/x-www-form-urlencoded":
            values = parse_qs(body.decode("utf-8"), keep_blank_values=False, strict_parsing=False)
            return values.get(field, [None])[0]
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return None


def app_session_cookie(set_cookies: list[str], name: str) -> str | None:
    """The value the app set for its session cookie, unless it is a deletion."""
    for header in set_cookies:
        try:
            jar: SimpleCookie = SimpleCookie(header)
        except CookieError:
            continue
        morsel = jar.get(name)
        if morsel is not None and morsel.value and morsel["max-age"] not in ("0", "-1"):
            return morsel.value
    return None


async def intercept_login(request: web.Request, target: Target) -> web.StreamResponse:
    from mfa_gateway.web.proxy import upstream_headers

    gate = request.app[GATE]
    runtime = request.app[RUNTIME]
    identifier = request.app[IDENTIFIER]
    login = gate.settings.identity.upstream_login
    assert login is not None
    rule = gate.policy.match(
        host=target.host, path=target.path.decoded, method="POST", client_ip=identifier.client_ip(request)
    )
    decision = decide(rule, None, None, runtime.clock())
    if isinstance(decision, Deny):
        return gate.refusal(request, decision, target)
    body = await request.content.read(login.max_body + 1)
    if len(body) > login.max_body:
        return json_error(413, "body_too_large", "The login form is too large.")
    headers = upstream_headers(request, gate, identifier, None)
    headers.popall("Content-Length", None)
    try:
        async with request.app[UPSTREAM].session.request(
            "POST",
            request.app[UPSTREAM].base_url + target.relative_url,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            answer_body = await answer.content.read(login.max_body + 1)
            status, answer_headers = answer.status, answer.headers
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamError(504, "the app did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(502, "the app cannot be reached") from exc
    skip = hop_by_hop(answer_headers) | {"content-length"}
    kept = tuple((name, value) for name, value in answer_headers.items() if name.lower() not in skip)
    app_cookie = app_session_cookie(answer_headers.getall("Set-Cookie", []), login.session_cookie)
    if status not in login.success_status or app_cookie is None:
        return _replay(status, kept, answer_body)  # a failed login passes back untouched
    username = submitted_username(body, request.content_type, login.username_field)
    if not username or len(answer_body) > login.max_body:
        log.error("app login succeeded but the user name field %r was not found; refusing", login.username_field)
        return json_error(
            502,
            "login_not_understood",
            "The gateway could not read the user name from the login form; check its configuration.",
        )
    user_id = canonical_user(username)
    now = runtime.clock()
    return_to = safe_redirect(answer_headers.get("Location"), allowed_hosts=gate.settings.redirects.allowed_hosts)
    pending_id = await runtime.pending.create(
        Pending(
            kind="intercept",
            user_id=user_id,
            auth_time=now,
            methods=("app",),
            binding=binding_of("app:" + app_cookie),
            return_to=return_to,
            held=HeldResponse(status, kept, answer_body),
        )
    )
    await runtime.audit.emit(
        AuditEvent(
            at=now, event="login.intercept", result="held", user_id=user_id, client_ip=identifier.client_ip(request)
        )
    )
    response = web.Response(status=303, headers={"Location": gate.page_url("challenge", return_to)})
    cookies.set_pending(response, gate.settings, pending_id)
    return response


def _replay(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> web.Response:
    response = web.Response(status=status, body=body)
    for name, value in headers:
        response.headers.add(name, value)
    return response
