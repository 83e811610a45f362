"""The WebAuthn JSON API under ``{prefix}/api/webauthn``: register, sign in with, list, rename and remove security
keys and passkeys. Bodies, errors and CSRF protection as in ``web.api`` (JSON only, read strictly, stable codes).

Each ceremony is two calls: ``.../options`` answers ``{ceremonyId, publicKey}``: ``publicKey`` goes to
``navigator.credentials.create`` or ``get`` (binary fields base64url-encoded, as WebAuthn Level 3's
``parse*OptionsFromJSON`` read them); the browser's answer (``PublicKeyCredential.toJSON()``) comes back as
``credential`` with the ``ceremonyId``. A ceremony serves the first factor that asked for it, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mfa_gateway.core import methods
from mfa_gateway.core.errors import (
    BadRequest,
    CredentialNotFound,
    PasskeySigninUnavailable,
    SecondFactorRequired,
    Unauthenticated,
    WebAuthnUnavailable,
)
from mfa_gateway.core.model import WebAuthnCredential
from mfa_gateway.core.webauthn_encoding import MAX_CREDENTIAL_ID, b64url, from_b64url
from mfa_gateway.runtime import longest_session
from mfa_gateway.service.account import end_everywhere
from mfa_gateway.service.login import LoginService, SignedIn
from mfa_gateway.service.mfa import Caller, Verified
from mfa_gateway.web import cookies
from mfa_gateway.web.api import caller_of, ok, read_json, set_session, signed_in_response, string_field
from mfa_gateway.web.bodies import parse_json_object
from mfa_gateway.web.cookie_header import request_cookie
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME
from mfa_gateway.web.signout import signed_out
from mfa_gateway.web.stepup import stepped_up_session

if TYPE_CHECKING:  # the service (and py_webauthn under it) loads only when the runtime builds it: WebAuthn on
    from mfa_gateway.service.webauthn import Removed, WebAuthnService

routes = web.RouteTableDef()


def webauthn_service(request: web.Request) -> WebAuthnService:
    """The WebAuthn use cases; ``WebAuthnUnavailable`` (404) when WebAuthn is off."""
    service = request.app[RUNTIME].webauthn
    if service is None:
        raise WebAuthnUnavailable()
    return service


def binding_of_principal(principal: Principal) -> str:
    """What a ceremony is bound to besides the user: the first factor's binding (a trusted header, an app session),
    else the bearer token's or the gateway session's id."""
    first = principal.first_factor
    if first.binding:
        return "ff:" + first.binding
    if first.token_id:
        return "jwt:" + first.token_id
    return "sid:" + principal.session.sid if principal.session is not None else "user:" + principal.user_id


def _pending_id(request: web.Request, body: dict[str, Any]) -> str | None:
    """A pending password sign-in this call completes (``challengeId`` or the pending cookie), as api/mfa/challenge
    reads it; None when there is none or the builtin login is off."""
    runtime = request.app[RUNTIME]
    if runtime.login is None:
        return None
    return string_field(body, "challengeId", required=False) or request_cookie(
        request, cookies.pending_cookie_name(runtime.settings)
    )


def _answer(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ceremony_id = string_field(body, "ceremonyId")
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise BadRequest("'credential' must be the PublicKeyCredential as JSON.", code="invalid_field")
    assert ceremony_id is not None
    return ceremony_id, credential


def answer_fields(fields: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """A key's answer posted by a page's form: ``ceremonyId``, and ``credential`` as the JSON ``toJSON()`` made,
    read as strictly as an API body."""
    ceremony_id = fields.get("ceremonyId", "")
    if not ceremony_id:
        raise BadRequest("'ceremonyId' must be a non-empty string.", code="invalid_field")
    try:
        credential = parse_json_object(fields.get("credential", "").encode())
    except BadRequest:
        raise BadRequest("'credential' must be the PublicKeyCredential as JSON.", code="invalid_field") from None
    return ceremony_id, credential


def _mfa_principal(request: web.Request) -> tuple[Principal, Caller]:
    principal, caller = caller_of(request)
    if principal.mfa_time is None:
        raise SecondFactorRequired()
    return principal, caller


def credential_json(credential: WebAuthnCredential) -> dict[str, Any]:
    return {
        "id": b64url(credential.credential_id),
        "name": credential.name,
        "createdAt": credential.created_at,
        "lastUsedAt": credential.last_used_at,
        "transports": list(credential.transports),
        "backupEligible": credential.backup_eligible,
        "backedUp": credential.backup_state,
        "aaguid": credential.aaguid,
    }


def credential_id_of(text: str) -> bytes:
    """A credential id as a URL names it (base64url); ``CredentialNotFound`` when it cannot be one."""
    try:
        raw = from_b64url(text, limit=2 * MAX_CREDENTIAL_ID)
    except ValueError:
        raise CredentialNotFound() from None
    if not raw:
        raise CredentialNotFound()
    return raw


def _credential_id(request: web.Request) -> bytes:
    return credential_id_of(request.match_info["credential_id"])


# -- registration ------------------------------------------------------------------------------------------------


@routes.post("/api/webauthn/registration/options")
async def registration_options(request: web.Request) -> web.Response:
    body = await read_json(request)
    service = webauthn_service(request)
    principal, caller = caller_of(request)
    unenrolled = request.app[RUNTIME].settings.enrollment.unenrolled
    started = await service.start_registration(
        caller, binding=binding_of_principal(principal), name=body.get("name"), unenrolled=unenrolled
    )
    return ok({"ceremonyId": started.ceremony_id, "publicKey": started.options})


@routes.post("/api/webauthn/registration")
async def registration(request: web.Request) -> web.Response:
    """Keep the new credential; when it is the user's first second factor, the session is stepped up with it (as
    activating an authenticator app does)."""
    ceremony_id, credential = _answer(await read_json(request))
    service = webauthn_service(request)
    principal, caller = caller_of(request)
    registered = await service.finish_registration(
        caller,
        binding=binding_of_principal(principal),
        ceremony_id=ceremony_id,
        response=credential,
        unenrolled=request.app[RUNTIME].settings.enrollment.unenrolled,
    )
    response = ok({"credential": credential_json(registered.credential), "enrolled": registered.enrolled})
    if registered.enrolled:
        verified = Verified(method=methods.WEBAUTHN)
        await set_session(request, response, await stepped_up_session(request, principal, verified))
    return response


# -- authentication ----------------------------------------------------------------------------------------------


@routes.post("/api/webauthn/authentication/options")
async def authentication_options(request: web.Request) -> web.Response:
    body = await read_json(request)
    service = webauthn_service(request)
    pending_id = _pending_id(request, body)
    if pending_id is not None:
        pending = await request.app[RUNTIME].pending.get(pending_id)
        if pending is None or pending.kind != "login":
            raise Unauthenticated("The sign-in has expired; sign in again.", code="challenge_expired")
        caller = Caller(pending.user_id, request.app[IDENTIFIER].limit_key(request))
        started = await service.start_authentication(caller, binding="pending:" + pending_id)
    else:
        principal, caller = caller_of(request)
        started = await service.start_authentication(caller, binding=binding_of_principal(principal))
    return ok({"ceremonyId": started.ceremony_id, "publicKey": started.options})


@routes.post("/api/webauthn/authentication")
async def authentication(request: web.Request) -> web.Response:
    """Step up the current session, or complete a pending password sign-in, with a security key's assertion."""
    body = await read_json(request)
    ceremony_id, credential = _answer(body)
    service = webauthn_service(request)
    runtime = request.app[RUNTIME]
    pending_id = _pending_id(request, body)
    if pending_id is not None and runtime.login is not None:
        binding = "pending:" + pending_id

        async def assertion(caller: Caller) -> Verified:
            return await service.verify(
                caller, binding=binding, ceremony_id=ceremony_id, response=credential, event="login.mfa"
            )

        signed_in = await runtime.login.complete_challenge_by(
            pending_id, assertion, request.app[IDENTIFIER].limit_key(request)
        )
        return await signed_in_response(request, signed_in)
    principal, caller = caller_of(request)
    verified = await service.verify(
        caller, binding=binding_of_principal(principal), ceremony_id=ceremony_id, response=credential
    )
    response = ok(method=verified.method)
    await set_session(request, response, await stepped_up_session(request, principal, verified))
    return response


# -- passkey sign-in ----------------------------------------------------------------------------------------------


def passkey_services(request: web.Request) -> tuple[WebAuthnService, LoginService]:
    """The services a passkey sign-in needs; ``PasskeySigninUnavailable`` (404) unless the builtin sign-in and
    WebAuthn are both on."""
    runtime = request.app[RUNTIME]
    if runtime.webauthn is None or runtime.login is None:
        raise PasskeySigninUnavailable()
    return runtime.webauthn, runtime.login


async def passkey_signed_in(request: web.Request, ceremony_id: str, credential: dict[str, Any]) -> SignedIn:
    """Sign in with a passkey's answer (the API and the sign-in page both come here)."""
    service, login = passkey_services(request)
    client_ip = request.app[IDENTIFIER].limit_key(request)
    user_id = await service.verify_passkey(client_ip, ceremony_id=ceremony_id, response=credential, known=login.knows)
    return await login.signed_in_with_passkey(user_id)


@routes.post("/api/webauthn/passkey/options")
async def passkey_options(request: web.Request) -> web.Response:
    """Options to sign in with a passkey, no user named: the authenticator offers its discoverable credentials."""
    await read_json(request)
    service, _ = passkey_services(request)
    started = await service.start_passkey()
    return ok({"ceremonyId": started.ceremony_id, "publicKey": started.options})


@routes.post("/api/webauthn/passkey")
async def passkey(request: web.Request) -> web.Response:
    """Sign in with a passkey alone: both factors at once, answered as api/login answers a signed-in user."""
    body = await read_json(request)
    passkey_services(request)
    ceremony_id, credential = _answer(body)
    return await signed_in_response(request, await passkey_signed_in(request, ceremony_id, credential))


# -- managing credentials ----------------------------------------------------------------------------------------


@routes.get("/api/webauthn/credentials")
async def credentials(request: web.Request) -> web.Response:
    service = webauthn_service(request)
    _, caller = _mfa_principal(request)
    return ok({"credentials": [credential_json(c) for c in await service.credentials(caller.user_id)]})


@routes.patch("/api/webauthn/credentials/{credential_id}")
async def rename(request: web.Request) -> web.Response:
    body = await read_json(request)
    service = webauthn_service(request)
    _, caller = _mfa_principal(request)
    renamed = await service.rename(caller, _credential_id(request), body.get("name"))
    return ok({"credential": credential_json(renamed)})


Answer = Callable[[], tuple[str, dict[str, Any]] | None]
"""A key's answer sent with a removal (``ceremonyId``, ``credential``), read when it is needed; None: none sent."""


async def remove_with_proof(
    request: web.Request, principal: Principal, credential_id: bytes, *, token: str | None, answer: Answer
) -> Removed:
    """Remove one of the caller's credentials once a fresh second factor sent with the request passed: ``token``
    (a current code or backup code), else ``answer`` (an assertion of any of the user's keys, from a ceremony of
    this first factor). Removing the last second factor turns MFA off: every session of the user ends, as with
    api/mfa/disable (the caller clears the cookies of this one). The API and the pages remove through here."""
    service = webauthn_service(request)
    runtime = request.app[RUNTIME]
    caller = Caller(principal.user_id, request.app[IDENTIFIER].limit_key(request), principal.mfa_time)
    event = "mfa.webauthn.remove.verify"

    async def proof() -> Verified:
        if token is not None:
            return await runtime.mfa.verify(caller, token, event=event)
        sent = answer()
        if sent is None:
            raise BadRequest(
                "Send a current code as 'token', or a security key's answer as 'ceremonyId' and 'credential'.",
                code="invalid_field",
            )
        ceremony_id, credential = sent
        binding = binding_of_principal(principal)
        return await service.verify(caller, binding=binding, ceremony_id=ceremony_id, response=credential, event=event)

    removed = await service.remove(caller, credential_id, proof)
    if not removed.factors_left:
        await end_everywhere(
            runtime.revocations,
            runtime.devices,
            caller,
            longest_session=longest_session(runtime.settings),
            via="disable",
        )
    return removed


@routes.delete("/api/webauthn/credentials/{credential_id}")
async def remove(request: web.Request) -> web.Response:
    """Remove a credential with a fresh second factor in the same request: ``token`` (a current code or backup
    code), or ``ceremonyId`` and ``credential`` (an assertion of any of the user's keys, from
    authentication/options). Removing the last second factor turns MFA off: every session ends, as with
    api/mfa/disable."""
    body = await read_json(request)
    webauthn_service(request)
    principal, _ = caller_of(request)
    token = string_field(body, "token", required=False)
    removed = await remove_with_proof(
        request,
        principal,
        _credential_id(request),
        token=token,
        answer=lambda: _answer(body) if "ceremonyId" in body else None,
    )
    response = ok({"credential": credential_json(removed.credential), "mfaActive": removed.factors_left})
    if not removed.factors_left:
        signed_out(response, request, forget_device=True)
    return response
