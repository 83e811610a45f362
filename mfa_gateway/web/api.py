"""The JSON API under ``{prefix}/api``: the seed's login and MFA endpoints.

POST bodies must be ``application/json`` in UTF-8 (a cross-site form cannot send that without a CORS preflight, which
the gateway never grants), at most 16 KiB, without a ``Content-Encoding``, and are read strictly (``web.bodies``).
Every error is ``{"success": false, "error", "code"}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from mfa_gateway.core.devices import device_label
from mfa_gateway.core.errors import BadRequest, InvalidCode
from mfa_gateway.core.session import Session
from mfa_gateway.runtime import longest_session
from mfa_gateway.service.account import disable_everywhere, end_everywhere, start_self_enrollment
from mfa_gateway.service.login import MfaRequired, SignedIn
from mfa_gateway.service.mfa import Caller, Verified
from mfa_gateway.web import cookies, devices
from mfa_gateway.web.bodies import UnsupportedMediaType, parse_json_object, read_body
from mfa_gateway.web.cookie_header import request_cookie
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME
from mfa_gateway.web.openapi import openapi_document
from mfa_gateway.web.signout import revoke_current, signed_out
from mfa_gateway.web.stepup import stepped_up_session

MAX_BODY = 16 * 1024

routes = web.RouteTableDef()


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as one JSON object, read strictly (``web.bodies``): wrong type 415, over 16 KiB 413, unreadable
    400, each with its stable code; an empty body is ``{}``."""
    if request.content_type != "application/json" or (request.charset or "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("Send the body as application/json (UTF-8).", code="json_required")
    raw = await read_body(request, MAX_BODY)
    return parse_json_object(raw or b"{}")


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"'{name}' must be a non-empty string.", code="invalid_field")
    return value


def flag_field(body: dict[str, Any], name: str) -> bool:
    """An optional boolean (absent or null: false)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false.", code="invalid_field")
    return value


def caller_of(request: web.Request) -> tuple[Principal, Caller]:
    identifier = request.app[IDENTIFIER]
    principal = identifier.require(request)
    return principal, Caller(principal.user_id, identifier.limit_key(request), principal.mfa_time)


def ok(data: dict[str, Any] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"success": True, **extra}
    if data is not None:
        body["data"] = data
    return web.json_response(body)


async def set_session(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """Give the browser a session just issued, and record it for the account page (the one place after issuance
    every page and API sign-in passes; the gate's refresh of a session is no issuance and records nothing)."""
    runtime = request.app[RUNTIME]
    await runtime.sessions.issued(session, device_label(request.headers.get(hdrs.USER_AGENT)))
    cookies.set_session(response, runtime.settings, runtime.keys.session_keyring, session, runtime.clock())


async def signed_in_response(request: web.Request, result: SignedIn) -> web.Response:
    response = ok(
        token=result.token,
        user={
            "id": result.user.username,
            "username": result.user.username,
            "email": result.user.email,
            "mfaEnabled": result.mfa_enabled,
        },
    )
    await set_session(request, response, result.session)
    cookies.clear_pending(response, request.app[RUNTIME].settings)
    return response


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.login is None:
        raise web.HTTPNotFound()
    body = await read_json(request)
    username = string_field(body, "username")
    password = string_field(body, "password")
    mfa_token = body.get("mfaToken")
    if mfa_token is not None and not isinstance(mfa_token, str):
        raise InvalidCode()  # as the seed answers any token that cannot be right: 401 "Invalid MFA token"
    assert username is not None and password is not None
    result = await runtime.login.login(
        username, password, mfa_token or None, request.app[IDENTIFIER].limit_key(request)
    )
    if isinstance(result, MfaRequired):
        response = ok(mfaRequired=True, challengeId=result.challenge_id, message="Please provide MFA token")
        cookies.set_pending(response, runtime.settings, result.challenge_id)
        return response
    return await signed_in_response(request, result)


@routes.post("/api/mfa/enable")
async def enable(request: web.Request) -> web.Response:
    await read_json(request)
    _, caller = caller_of(request)
    runtime = request.app[RUNTIME]
    start = await start_self_enrollment(runtime.mfa, caller, runtime.settings.enrollment.unenrolled)
    return ok(
        {
            "secret": start.secret,
            "otpauthUrl": start.otpauth_url,
            "qrCode": start.qr_png,
            "qrSvg": start.qr_svg,
            "backupCodes": start.backup_codes,
            "algorithm": start.params.algorithm.value,
            "digits": start.params.digits,
            "period": start.params.period,
        }
    )


@routes.post("/api/mfa/verify")
async def verify(request: web.Request) -> web.Response:
    token = string_field(await read_json(request), "token")
    assert token is not None
    principal, caller = caller_of(request)
    await request.app[RUNTIME].mfa.activate(caller, token)
    response = ok(message="MFA activated successfully")
    await set_session(request, response, await stepped_up_session(request, principal, Verified(method="otp")))
    return response


@routes.post("/api/mfa/challenge")
async def challenge(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = await read_json(request)
    token = string_field(body, "token")
    assert token is not None
    remember = _remember_age(request, body)
    challenge_id = string_field(body, "challengeId", required=False) or request_cookie(
        request, cookies.pending_cookie_name(runtime.settings)
    )
    if challenge_id and runtime.login is not None:
        signed_in = await runtime.login.complete_challenge(
            challenge_id, token, request.app[IDENTIFIER].limit_key(request)
        )
        response = await signed_in_response(request, signed_in)
        session = signed_in.session
    else:
        principal, caller = caller_of(request)
        verified = await runtime.mfa.verify(caller, token)
        response = ok(method=verified.method, backupCodesRemaining=verified.backup_codes_left)
        session = await stepped_up_session(request, principal, verified)
        await set_session(request, response, session)
    if remember is not None:
        await devices.remember(request, response, session.user_id, session.methods[0], remember)
    return response


def _remember_age(request: web.Request, body: dict[str, Any]) -> float | None:
    """``rememberDevice: true``: how long to remember this browser, the longest any rule remembers one (the client
    names no age); 400 ``remember_device_off`` before any code is checked when no rule remembers devices."""
    if not flag_field(body, "rememberDevice"):
        return None
    age = devices.longest_age(request)
    if age is None:
        raise BadRequest("No rule of this gateway remembers devices.", code="remember_device_off")
    return age


@routes.post("/api/mfa/disable")
async def disable(request: web.Request) -> web.Response:
    """Turn MFA off (needs a current code) and revoke every session of the user on every replica."""
    token = string_field(await read_json(request), "token")
    assert token is not None
    _, caller = caller_of(request)
    runtime = request.app[RUNTIME]
    await disable_everywhere(
        runtime.mfa,
        runtime.revocations,
        runtime.devices,
        caller,
        token,
        longest_session=longest_session(runtime.settings),
    )
    response = ok(message="MFA disabled")
    signed_out(response, request, forget_device=True)
    return response


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    """End the current session on every replica and clear the gateway's cookies; with ``everywhere: true``, end
    every session and JWT of the signed-in user and forget all their remembered devices."""
    everywhere = flag_field(await read_json(request), "everywhere")
    if everywhere:
        runtime = request.app[RUNTIME]
        _, caller = caller_of(request)
        longest = longest_session(runtime.settings)
        await end_everywhere(runtime.revocations, runtime.devices, caller, longest_session=longest, via="logout")
    else:
        await revoke_current(request)
    response = ok(message="Signed out everywhere" if everywhere else "Signed out")
    signed_out(response, request, forget_device=everywhere)
    return response


@routes.post("/api/mfa/backup-codes")
async def regenerate(request: web.Request) -> web.Response:
    token = string_field(await read_json(request), "token")
    assert token is not None
    _, caller = caller_of(request)
    codes = await request.app[RUNTIME].mfa.regenerate_backup_codes(caller, token)
    return ok({"backupCodes": codes})


@routes.get("/api/mfa/status")
async def status(request: web.Request) -> web.Response:
    principal, caller = caller_of(request)
    current = await request.app[RUNTIME].mfa.status(caller.user_id)
    params = current.params
    return ok(
        {
            "user": principal.user_id,
            "enrolled": current.enrolled,
            "active": current.active,
            "totp": current.totp,
            "webauthnCredentials": current.webauthn,
            "backupCodesRemaining": current.backup_codes_left,
            "algorithm": params.algorithm if params else None,
            "digits": params.digits if params else None,
            "period": params.period if params else None,
            "mfaSession": principal.mfa_time is not None,
        }
    )


@routes.get("/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[RUNTIME].keys.signing_keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    document = openapi_document(request.app[RUNTIME].settings.prefix)
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})
