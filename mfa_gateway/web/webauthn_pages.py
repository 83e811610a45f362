"""The security-keys pages under ``{prefix}/security-keys``: a user's keys and passkeys listed, one registered,
renamed or removed. (The challenge's key button is in ``pages``, beside the code form.)

The rules are the API's (``service.webauthn``, docs/guides/webauthn.md): a user with no second factor registers a
first key from a first factor alone (unless ``enrollment.unenrolled: deny``); listing, renaming and removing need an
MFA session; adding another key needs an MFA at most 15 minutes old, which the page explains, offering to verify
again; removing needs a fresh second factor in the same request. Registering needs the script (it calls the JSON
API); renaming, and removing with a code, are plain forms that work without it.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from mfa_gateway.core import errors
from mfa_gateway.core.model import WebAuthnCredential
from mfa_gateway.core.webauthn_encoding import b64url
from mfa_gateway.service.mfa import ADD_FACTOR_WITHIN, Factors
from mfa_gateway.web import csrf, html, webauthn_html
from mfa_gateway.web.errors import status_of
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME
from mfa_gateway.web.pages import (
    CODE_ERROR,
    _Respond,
    caller,
    code_advice,
    page_errors,
    page_url,
    posted,
    render,
    render_message,
    return_to,
    see_other,
    with_csrf,
)
from mfa_gateway.web.signout import signed_out
from mfa_gateway.web.webauthn_api import answer_fields, credential_id_of, remove_with_proof, webauthn_service

routes = web.RouteTableDef()
TITLE = "Security keys and passkeys"
NAME_ERROR = "name-error"


async def _user_of(request: web.Request, *, first_key: bool = False) -> Principal:
    """Who the page is for: a signed-in user with an MFA session, or (``first_key``) one with no second factor yet,
    who may register a first key. Otherwise the answer is decided here (``_Respond``): sign in, or verify first."""
    webauthn_service(request)  # WebAuthn off: a 404 page
    runtime = request.app[RUNTIME]
    principal = request.app[IDENTIFIER].identify(request)
    if principal is None:
        if runtime.login is not None:
            raise _Respond(see_other(page_url(request, "signin", request.path_qs)))
        raise _Respond(render_message(request, 401, "Sign-in required", "Sign in first.", again=True))
    if principal.mfa_time is not None:
        return principal
    if first_key and not await runtime.mfa.is_enrolled(principal.user_id):
        if runtime.settings.enrollment.unenrolled == "deny":
            raise errors.EnrollmentDisabled()
        return principal
    raise _Respond(see_other(page_url(request, "challenge", request.path_qs)))


def _list_url(request: web.Request, rd: str) -> str:
    return page_url(request, "security-keys", rd)


def _when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return f'<time datetime="{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}">{moment.strftime("%Y-%m-%d %H:%M")} UTC</time>'


def _synced(key: WebAuthnCredential) -> str:
    if key.backup_state:
        return "Yes: a passkey backed up and synced by your device's account"
    if key.backup_eligible:
        return "Can be synced, not backed up yet"
    return "No: it stays on this key or device"


def _item(request: web.Request, key: WebAuthnCredential, rd: str) -> str:
    prefix = request.app[RUNTIME].settings.prefix
    query = urlencode({"id": b64url(key.credential_id), "rd": rd})
    last_used = _when(key.last_used_at) if key.last_used_at is not None else "Never"
    details = (
        f"<dt>Added</dt><dd>{_when(key.created_at)}</dd><dt>Last used</dt><dd>{last_used}</dd>"
        f"<dt>Synced</dt><dd>{escape(_synced(key))}</dd>"
    )
    links = html.actions(
        [
            (f"{prefix}/security-keys/rename?{query}", f"Rename {key.name}"),
            (f"{prefix}/security-keys/remove?{query}", f"Remove {key.name}"),
        ]
    )
    return f'<li><h2>{escape(key.name)}</h2><dl class="key">{details}</dl>{links}</li>'


def _adding(request: web.Request, principal: Principal, factors: Factors, rd: str) -> str:
    """How to add a key: the registration form, or why not now (the most keys allowed; an MFA too long ago)."""
    prefix = request.app[RUNTIME].settings.prefix
    here = _list_url(request, rd)
    limit = webauthn_service(request).rp.max_credentials
    if factors.webauthn >= limit:
        return html.paragraph(
            f"You have {limit} security keys and passkeys, the most allowed. Remove one to add another."
        )
    mfa_time = principal.mfa_time
    if factors.enrolled and mfa_time is not None and request.app[RUNTIME].clock() - mfa_time > ADD_FACTOR_WITHIN:
        minutes = int(ADD_FACTOR_WITHIN // 60)
        return html.paragraph(
            f"Adding a key needs a check with your second factor in the last {minutes} minutes, and yours was longer "
            "ago. Verify again, then add the key."
        ) + html.actions([(page_url(request, "challenge", here), "Verify again")])
    intro = (
        ""
        if factors.enrolled
        else html.paragraph("It becomes your second factor: you will use it each time you sign in.")
    )
    form = webauthn_html.register_form(
        prefix + "/api/webauthn/registration/options", prefix + "/api/webauthn/registration", here
    )
    return (
        intro
        + webauthn_html.part(form)
        + webauthn_html.fallback(
            "Registering a security key or passkey needs JavaScript and a browser that supports them: turn "
            "JavaScript on, or use another browser."
        )
    )


@routes.get("/security-keys")
@page_errors
async def keys_page(request: web.Request) -> web.StreamResponse:
    found = await _user_of(request, first_key=True)
    runtime = request.app[RUNTIME]
    rd = return_to(request)
    keys = await webauthn_service(request).credentials(found.user_id)
    factors = await runtime.mfa.factors(found.user_id)
    listing = (
        f'<ul class="keys">{"".join(_item(request, key, rd) for key in keys)}</ul>'
        if keys
        else html.paragraph("You have no security keys or passkeys yet.")
    )
    body = (
        webauthn_html.alert()
        + listing
        + "<h2>Add a security key or passkey</h2>"
        + _adding(request, found, factors, rd)
        + html.actions(
            [(rd, "Back to the application")]
            # the account page needs a second factor: no link for a user registering their first one
            + ([(runtime.settings.prefix + "/account", "Your account")] if factors.enrolled else [])
        )
    )
    return render(request, TITLE, body, script=True)


async def _credential(request: web.Request, principal: Principal, text: str) -> WebAuthnCredential:
    """The signed-in user's credential ``text`` names (base64url), or ``CredentialNotFound`` (a 404 page)."""
    wanted = credential_id_of(text)
    for key in await webauthn_service(request).credentials(principal.user_id):
        if hmac.compare_digest(key.credential_id, wanted):
            return key
    raise errors.CredentialNotFound()


# -- rename -----------------------------------------------------------------------------------------------------


def _rename_form(
    request: web.Request, token: str, key: WebAuthnCredential, rd: str, error: str = "", status: int = 200
) -> web.Response:
    prefix = request.app[RUNTIME].settings.prefix
    fields = (
        html.field(
            "name",
            "New name",
            extra=f'maxlength="64" value="{escape(key.name)}"',
            error_id=NAME_ERROR if error else "",
        )
        + (html.error(NAME_ERROR, error) if error else "")
        + html.hidden("id", b64url(key.credential_id))
        + html.hidden("rd", rd)
        + html.hidden(csrf.FIELD, token)
    )
    body = (
        html.paragraph(f"A name tells your keys apart. This one is called “{key.name}”.")
        + html.form(prefix + "/security-keys/rename", fields, "Rename")
        + html.actions([(_list_url(request, rd), "Back to your security keys")])
    )
    return render(request, "Rename a security key", body, status)


@routes.get("/security-keys/rename")
@page_errors
async def rename_page(request: web.Request) -> web.StreamResponse:
    found = await _user_of(request)
    key = await _credential(request, found, request.query.get("id", ""))
    rd = return_to(request)
    return with_csrf(request, lambda token: _rename_form(request, token, key, rd))


@routes.post("/security-keys/rename")
@page_errors
async def rename(request: web.Request) -> web.StreamResponse:
    fields = await posted(request)
    found = await _user_of(request)
    rd = return_to(request, fields.get("rd"))
    key = await _credential(request, found, fields.get("id", ""))
    try:
        await webauthn_service(request).rename(caller(request, found.user_id), key.credential_id, fields.get("name"))
    except errors.BadRequest as error:
        message, status = error.message, status_of(error)
        return with_csrf(request, lambda t: _rename_form(request, t, key, rd, message, status))
    return see_other(_list_url(request, rd))


# -- remove -----------------------------------------------------------------------------------------------------


def _remove_form(
    request: web.Request,
    token: str,
    key: WebAuthnCredential,
    factors: Factors,
    rd: str,
    *,
    code_error: str = "",
    key_error: str = "",
    status: int = 200,
) -> web.Response:
    """Confirm with a fresh second factor: any of the user's keys (this one too), or a code when they have an app."""
    prefix = request.app[RUNTIME].settings.prefix
    action = prefix + "/security-keys/remove"
    which = html.hidden("id", b64url(key.credential_id)) + html.hidden("rd", rd) + html.hidden(csrf.FIELD, token)
    last = not factors.totp and factors.webauthn <= 1
    body = html.paragraph(f"Remove “{key.name}”? Confirm with a second factor first.")
    if last:
        body += html.paragraph(
            "This is your only second factor: removing it turns two-factor authentication off and signs you out "
            "everywhere.",
            "notice",
        )
    body += webauthn_html.alert(key_error) + webauthn_html.part(
        webauthn_html.authenticate_form(
            action,
            prefix + "/api/webauthn/authentication/options",
            which,
            "Confirm with a security key or passkey",
        )
    )
    if factors.totp:
        code = html.field(
            "code",
            "Or a current authentication code or backup code",
            autocomplete="one-time-code",
            error_id=CODE_ERROR if code_error else "",
        ) + (html.error(CODE_ERROR, code_error) if code_error else "")
        body += html.form(action, code + which, "Remove with this code", css_class="secondary")
    else:
        body += webauthn_html.fallback(
            "Confirming with a security key or passkey needs JavaScript and a browser that supports them: turn "
            "JavaScript on, or use another browser."
        )
    body += html.actions([(_list_url(request, rd), "Back to your security keys")])
    return render(request, "Remove a security key", body, status, script=True)


@routes.get("/security-keys/remove")
@page_errors
async def remove_page(request: web.Request) -> web.StreamResponse:
    found = await _user_of(request)
    key = await _credential(request, found, request.query.get("id", ""))
    factors = await request.app[RUNTIME].mfa.factors(found.user_id)
    rd = return_to(request)
    return with_csrf(request, lambda token: _remove_form(request, token, key, factors, rd))


@routes.post("/security-keys/remove")
@page_errors
async def remove(request: web.Request) -> web.StreamResponse:
    """Remove with the code or the key's answer posted; without a second factor left, MFA is off and the user is
    signed out everywhere, as the disable page does."""
    fields = await posted(request)
    found = await _user_of(request)
    rd = return_to(request, fields.get("rd"))
    key = await _credential(request, found, fields.get("id", ""))
    code = fields.get("code") or None
    try:
        removed = await remove_with_proof(
            request,
            found,
            key.credential_id,
            token=code,
            answer=lambda: answer_fields(fields) if "ceremonyId" in fields else None,
        )
    except (errors.CeremonyExpired, errors.InvalidCode, errors.BadRequest) as error:
        factors = await request.app[RUNTIME].mfa.factors(found.user_id)
        status = status_of(error)
        key_error = webauthn_html.refusal(error) if code is None else ""
        code_error = "" if code is None else error.message
        if code is not None and isinstance(error, errors.InvalidCode):
            code_error = f"That code is not valid. {code_advice(code)}"

        def again(token: str) -> web.Response:
            return _remove_form(
                request, token, key, factors, rd, code_error=code_error, key_error=key_error, status=status
            )

        return with_csrf(request, again)
    if removed.factors_left:
        return see_other(_list_url(request, rd))
    response = render_message(
        request,
        200,
        "Two-factor authentication is off",
        f"“{key.name}” was your last second factor. You have been signed out everywhere. Sign in again to continue.",
        again=True,
    )
    signed_out(response, request, forget_device=True)
    return response
