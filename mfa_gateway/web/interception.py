"""Login interception (``identity.source: upstream_login``): MFA in front of an app's own login form.

The user is named by the app itself when ``whoami_path`` is set (the gateway asks the app, with the new session
cookie, who is signed in), otherwise by the login form's user-name field, read strictly: exactly one value, UTF-8
only, in the encodings browsers send; anything the app might read differently is refused before it reaches the
app, so the second factor can never be checked for another user than the one the app signed in.

The gateway forwards the app's login POST unchanged. A failed login (anything but a configured success status with
a ``Set-Cookie`` of the app's session cookie) passes back untouched. A successful one is *held*: its status,
headers (with the app's session cookie) and body are sealed into a pending challenge, and the browser is sent to
the MFA challenge (or to enrollment). Only after MFA succeeds does the gateway release the app's response, together
with a step-up session bound to a hash of the app's session cookie. This module is the HTTP side; holding and
releasing are the use case in ``service.interception``.
"""

from __future__ import annotations

import logging
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from mfa_gateway.config import Settings, UpstreamLogin
from mfa_gateway.core.decision import Deny, decide
from mfa_gateway.core.errors import BadRequest
from mfa_gateway.core.redirects import safe_redirect
from mfa_gateway.core.users import canonical_user
from mfa_gateway.service.interception import hold_app_login
from mfa_gateway.service.pending import HeldResponse
from mfa_gateway.web import cookies
from mfa_gateway.web.bodies import InvalidJson, parse_json_object, read_at_most, refuse_encoded
from mfa_gateway.web.errors import json_error
from mfa_gateway.web.gate import Target
from mfa_gateway.web.keys import GATE, HEADERS, IDENTIFIER, REFUSALS, RUNTIME, UPSTREAM
from mfa_gateway.web.upstream import hop_by_hop, upstream_errors

log = logging.getLogger("mfa_gateway.interception")
FAILED_LOGIN_LIMIT = 8 * 1024 * 1024
"""The most of a failed login's answer the gateway passes back (it is read, not streamed, to decide on it)."""


class LoginNotUnderstood(BadRequest):
    code = "login_not_understood"
    default_message = "The sign-in form could not be read unambiguously."


def is_login_post(request: web.Request, settings: Settings, target: Target) -> bool:
    login = settings.identity.upstream_login
    if settings.identity.source != "upstream_login" or login is None or target.method != "POST":
        return False
    expected = login.login_path.casefold() if settings.policy.case_insensitive_paths else login.login_path
    return target.path.decoded == expected


def submitted_username(body: bytes, content_type: str, charset: str | None, field: str) -> str:
    """The one user name the form submits, read the way every common parser reads it, or ``LoginNotUnderstood``.

    Browsers percent-encode everything but ASCII letters, digits and ``*-._`` in a form, so raw ``;`` (an old
    separator), raw non-ASCII or control bytes, another charset, or a repeated field only come from a client that
    wants the gateway and the app to disagree.
    """
    if charset is not None and charset.lower() != "utf-8":
        raise LoginNotUnderstood()
    try:
        if content_type == "application/x-www-form-urlencoded":
            if b";" in body or any(byte < 0x20 or byte > 0x7E for byte in body):
                raise LoginNotUnderstood()
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
            values = [v for k, v in pairs if k == field]
            value: object = values[0] if len(values) == 1 else None
        elif content_type == "application/json":
            value = parse_json_object(body).get(field)  # strict: duplicate keys, depth, numbers (web.bodies)
        else:
            value = None
    except (ValueError, UnicodeDecodeError, InvalidJson) as exc:
        raise LoginNotUnderstood() from exc
    if not isinstance(value, str) or not value:
        raise LoginNotUnderstood()
    return value


async def app_whoami(request: web.Request, login: UpstreamLogin, app_cookie: str) -> str:
    """Ask the app who its new session belongs to (``whoami_path``); ``LoginNotUnderstood`` if it cannot say."""
    assert login.whoami_path is not None
    upstream = request.app[UPSTREAM]
    try:
        async with upstream.session.get(
            upstream.base_url + login.whoami_path,
            headers={"Cookie": f"{login.session_cookie}={app_cookie}", "Accept": "application/json"},
            allow_redirects=False,
        ) as answer:
            data = await answer.json(content_type=None) if answer.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise LoginNotUnderstood("The application did not say who signed in.") from exc
    user = data.get(login.whoami_field) if isinstance(data, dict) else None
    if not isinstance(user, str) or not user:
        raise LoginNotUnderstood("The application did not say who signed in.")
    return user


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
        return request.app[REFUSALS].answer(request, decision, target)
    refuse_encoded(request)  # the gateway reads the form, so it must be able to: 415 unsupported_encoding
    body = await read_at_most(request.content, login.max_body + 1)
    if len(body) > login.max_body:
        return json_error(413, "body_too_large", "The login form is too large.")
    # With whoami_path the app names the user; otherwise the form must name exactly one, unambiguously.
    username = (
        None
        if login.whoami_path
        else submitted_username(body, request.content_type, request.charset, login.username_field)
    )
    headers = request.app[HEADERS].for_upstream(request, identifier.peer(request), None)
    headers.popall("Content-Length", None)
    with upstream_errors:
        async with request.app[UPSTREAM].session.request(
            "POST",
            request.app[UPSTREAM].base_url + target.relative_url,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            status, answer_headers = answer.status, answer.headers
            app_cookie = app_session_cookie(answer_headers.getall("Set-Cookie", []), login.session_cookie)
            answer_body = await read_at_most(answer.content, login.max_body + 1)
            if len(answer_body) > login.max_body and (status not in login.success_status or app_cookie is None):
                # a failed login passes back whole, up to FAILED_LOGIN_LIMIT
                answer_body += await read_at_most(answer.content, FAILED_LOGIN_LIMIT + 1 - len(answer_body))
                if len(answer_body) > FAILED_LOGIN_LIMIT:
                    return json_error(502, "login_not_understood", "The application's sign-in answer is too large.")
    skip = hop_by_hop(answer_headers) | {"content-length"}
    kept = tuple((name, value) for name, value in answer_headers.items() if name.lower() not in skip)
    if status not in login.success_status or app_cookie is None:
        return replay(HeldResponse(status, kept, answer_body))  # a failed login passes back untouched
    if len(answer_body) > login.max_body:
        log.error("app login succeeded but its answer exceeds upstream_login.max_body; refusing to hold it")
        return json_error(502, "login_not_understood", "The application's sign-in answer is too large to hold.")
    named = await app_whoami(request, login, app_cookie) if login.whoami_path else username
    assert named is not None
    return_to = safe_redirect(answer_headers.get("Location"), allowed_hosts=gate.settings.redirects.allowed_hosts)
    pending_id = await hold_app_login(
        runtime.pending,
        runtime.audit,
        user_id=canonical_user(named),
        app_cookie=app_cookie,
        return_to=return_to,
        held=HeldResponse(status, kept, answer_body),
        now=runtime.clock(),
        client=identifier.limit_key(request),
    )
    response = web.Response(status=303, headers={"Location": request.app[REFUSALS].page_url("challenge", return_to)})
    cookies.set_pending(response, gate.settings, pending_id)
    return response


def replay(held: HeldResponse) -> web.Response:
    """The app's answer as the app gave it: a failed login at once, a held one after MFA (from ``pages``).

    aiohttp frames the body itself, so a length, transfer encoding or connection header is never copied.
    """
    response = web.Response(status=held.status, body=held.body)
    for name, value in held.headers:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            response.headers.add(name, value)
    return response
