"""The gateway's own pages under ``{prefix}``: sign-in, MFA challenge, enrollment, backup codes, disable, sign-out.

Every form is protected by ``csrf``; every value is escaped by ``html``; return targets (``rd``) pass
``safe_redirect`` (a relative path, or a host in ``redirects.allowed_hosts``). Domain errors are shown as pages.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from mfa_gateway.core import errors
from mfa_gateway.core.backup_codes import normalise as normalise_backup_code
from mfa_gateway.core.devices import DeviceMfa
from mfa_gateway.core.model import TotpParams
from mfa_gateway.core.redirects import safe_redirect
from mfa_gateway.runtime import longest_session
from mfa_gateway.service.account import disable_everywhere, start_self_enrollment
from mfa_gateway.service.interception import release_pending
from mfa_gateway.service.mfa import Caller, EnrollmentStart, Factors, Verified
from mfa_gateway.web import assets, cookies, csrf, devices, html, webauthn_html
from mfa_gateway.web.api import ok, read_json, set_session
from mfa_gateway.web.bodies import parse_form, read_body
from mfa_gateway.web.cookie_header import request_cookie
from mfa_gateway.web.errors import Handler, log_unavailable, retry_headers, status_of
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.interception import replay
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME
from mfa_gateway.web.refusals import PHISHING_RESISTANT, REQUIRE
from mfa_gateway.web.signout import revoke_current, signed_out
from mfa_gateway.web.stepup import stepped_up_session
from mfa_gateway.web.webauthn_api import (
    answer_fields,
    binding_of_principal,
    passkey_services,
    passkey_signed_in,
    webauthn_service,
)
from mfa_gateway.web.webauthn_html import CODES_ONLY, Offer

routes = web.RouteTableDef()
FORM_LIMIT = 16 * 1024
"""Bytes in one page form (the largest, a sign-in, is well under 2 KiB)."""


def render(request: web.Request, title: str, body: str, status: int = 200, *, script: bool = False) -> web.Response:
    """A page; with ``script``, one that loads the gateway's script (security keys: ``web.assets``)."""
    settings = request.app[RUNTIME].settings
    loaded = (assets.script_url(settings.prefix), assets.INTEGRITY) if script else None
    return html.page(settings.prefix, settings.redirects.allowed_hosts, title, body, status=status, script=loaded)


def render_message(
    request: web.Request,
    status: int,
    title: str,
    text: str,
    *,
    wait: float | None = None,
    advice: str = "",
    again: bool = False,
) -> web.Response:
    """A message page with a way on: back to where the user was going, and with ``again`` (the session is gone or
    never was) a sign-in link first."""
    settings = request.app[RUNTIME].settings
    links = way_back(request, again=again)
    return html.message_page(
        settings.prefix, settings.redirects.allowed_hosts, status, title, text, links=links, wait=wait, advice=advice
    )


def way_back(request: web.Request, *, again: bool) -> tuple[html.Link, ...]:
    """Back to the application (where the user was going, when the page knows it), and with ``again`` first a way
    to sign in again: the builtin sign-in page, or the application's login form the gateway intercepts."""
    rd = return_to(request)
    back: html.Link = (rd, "Back to the application")
    if not again:
        return (back,)
    settings = request.app[RUNTIME].settings
    login = settings.identity.upstream_login
    if request.app[RUNTIME].login is not None:
        return (page_url(request, "signin", rd), "Sign in again"), back
    if settings.identity.source == "upstream_login" and login is not None and rd.startswith("/"):
        return (f"{login.login_path}?{urlencode({'next': rd})}", "Sign in again"), back
    return ((rd, "Sign in again"),)  # the application sends the browser to the organisation's sign-in


TITLES = {
    "csrf_failed": "This form has expired",
    "enrollment_disabled": "Two-factor authentication is not set up",
    "not_enrolled": "Two-factor authentication is not set up",
    "already_enrolled": "Two-factor authentication is already on",
    "enrollment_not_pending": "No set-up in progress",
    "invalid_credentials": "Sign-in failed",
    "locked_out": "Too many failed attempts",
    "attempts_busy": "One moment, please",
    "dependency_unavailable": "Please try again shortly",
}
"""A specific heading for each error a page can meet; the class's own below for the rest."""

KIND_TITLES: tuple[tuple[type[errors.MfaError], str], ...] = (
    (errors.LockedOut, "Too many failed attempts"),
    (errors.DependencyUnavailable, "Please try again shortly"),
    (errors.Unauthenticated, "Sign-in required"),
    (errors.Forbidden, "Not allowed"),
    (errors.NotFound, "Not found"),
    (errors.Conflict, "Already done"),
    (errors.BadRequest, "The request could not be read"),
)


def error_title(error: errors.MfaError) -> str:
    title = TITLES.get(error.code)
    if title is not None:
        return title
    return next((title for kind, title in KIND_TITLES if isinstance(error, kind)), "The request was refused")


TEXTS = {
    "locked_out": "Too many failed attempts.",
    "dependency_unavailable": "A service the gateway needs is not answering.",
}
"""Page wording where the message is followed by the wait in words (the API's message says "later")."""


def error_page(request: web.Request, error: errors.MfaError, advice: str = "") -> web.Response:
    """A domain error as a page: its heading, its message, how long to wait (a lockout's or an unavailable
    dependency's ``Retry-After``, in words and as the header), ``advice`` and a way back."""
    retry = retry_headers(error)
    text = TEXTS.get(error.code)
    wait = float(retry["Retry-After"]) if text is not None and retry else None
    again = isinstance(error, errors.Unauthenticated | errors.LockedOut)
    response = render_message(
        request, status_of(error), error_title(error), text or error.message, wait=wait, advice=advice, again=again
    )
    response.headers.update(retry)
    return response


class _Respond(Exception):
    """Raised by a helper that has already decided the answer (sign in first, say); ``page_errors`` sends it."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def page_errors(handler: Handler) -> Handler:
    """Domain errors on a page become a page (with Retry-After when locked out), not JSON; early answers are sent."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Respond as early:
            return early.response
        except errors.MfaError as error:
            log_unavailable(error)
            return error_page(request, error)

    return wrapper


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a page acts for: a signed-in first factor, or a sign-in waiting for its second factor; ``factor``: how
    they proved who they are (``pwd``, ``hdr``, ``app``...), which a remembered device must have been trusted after."""

    user_id: str
    principal: Principal | None = None
    pending_id: str | None = None
    factor: str = ""


async def subject_of(request: web.Request) -> Subject | None:
    runtime = request.app[RUNTIME]
    pending_id = request_cookie(request, cookies.pending_cookie_name(runtime.settings))
    if pending_id:
        pending = await runtime.pending.get(pending_id)
        if pending is not None:
            return Subject(pending.user_id, pending_id=pending_id, factor=pending.methods[0] if pending.methods else "")
    principal = request.app[IDENTIFIER].identify(request)
    if principal is None:
        return None
    return Subject(principal.user_id, principal=principal, factor=devices.first_factor_of(principal))


def return_to(request: web.Request, submitted: str | None = None) -> str:
    settings = request.app[RUNTIME].settings
    target = submitted if submitted is not None else request.query.get("rd")
    return safe_redirect(target, allowed_hosts=settings.redirects.allowed_hosts, default="/")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def page_url(request: web.Request, page: str, rd: str) -> str:
    return f"{request.app[RUNTIME].settings.prefix}/{page}?{urlencode({'rd': rd})}"


async def posted(request: web.Request) -> dict[str, str]:
    """The form fields of a POST (read strictly, ``web.bodies``), after the CSRF check."""
    raw = await read_body(request, FORM_LIMIT)
    fields = parse_form(raw, request.content_type, request.charset)
    csrf.check(request, request.app[RUNTIME].settings, fields.get(csrf.FIELD))
    return fields


def with_csrf(request: web.Request, build: Callable[[str], web.Response]) -> web.Response:
    settings = request.app[RUNTIME].settings
    token = csrf.token_for(request, settings)
    response = build(token)
    csrf.remember(response, settings, token)
    return response


def caller(request: web.Request, user_id: str) -> Caller:
    principal = request.app[IDENTIFIER].identify(request)
    mfa_time = principal.mfa_time if principal is not None and principal.user_id == user_id else None
    return Caller(user_id, request.app[IDENTIFIER].limit_key(request), mfa_time)


async def require_subject(request: web.Request) -> Subject:
    """Who the page acts for; without one, the sign-in page (or a 401 page) is sent instead."""
    subject = await subject_of(request)
    if subject is not None:
        return subject
    runtime = request.app[RUNTIME]
    if runtime.login is not None:
        raise _Respond(see_other(page_url(request, "signin", return_to(request))))
    raise _Respond(
        render_message(
            request, 401, "Sign-in required", "Sign in to the application first, then try again.", again=True
        )
    )


async def posted_by_subject(request: web.Request) -> tuple[dict[str, str], Subject, str]:
    """A page POST: its CSRF-checked fields, who it acts for, and its validated return target."""
    fields = await posted(request)
    subject = await require_subject(request)
    return fields, subject, return_to(request, fields.get("rd"))


# -- sign-in (builtin identity) -------------------------------------------------------------------------------


def _signin_form(
    request: web.Request, token: str, rd: str, error: str = "", status: int = 200, *, passkey_error: str = ""
) -> web.Response:
    """The password form; with WebAuthn on, *Sign in with a passkey* above it (shown by the script alone)."""
    runtime = request.app[RUNTIME]
    prefix = runtime.settings.prefix
    error_id = "signin-error" if error else ""
    fields = (
        html.field("username", "User name", autocomplete="username", error_id=error_id)
        + html.field("password", "Password", kind="password", autocomplete="current-password", error_id=error_id)
        + html.hidden("rd", rd)
        + html.hidden(csrf.FIELD, token)
    )
    body = (html.error(error_id, error) if error else "") + html.form(prefix + "/signin", fields, "Sign in")
    if runtime.webauthn is None:
        return render(request, "Sign in", body, status)
    passkey = webauthn_html.passkey_signin(
        prefix + "/signin/passkey",
        prefix + "/api/webauthn/passkey/options",
        html.hidden("rd", rd) + html.hidden(csrf.FIELD, token),
        error=passkey_error,
    )
    return render(request, "Sign in", passkey + body, status, script=True)


@routes.get("/signin")
@page_errors
async def signin_page(request: web.Request) -> web.StreamResponse:
    if request.app[RUNTIME].login is None:
        raise web.HTTPNotFound()
    return with_csrf(request, lambda token: _signin_form(request, token, return_to(request)))


@routes.post("/signin")
@page_errors
async def signin(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    if runtime.login is None:
        raise web.HTTPNotFound()
    fields = await posted(request)
    rd = return_to(request, fields.get("rd"))
    try:
        user = await runtime.login.check_password(
            fields.get("username", ""), fields.get("password", ""), request.app[IDENTIFIER].limit_key(request)
        )
    except errors.InvalidCredentials:
        return with_csrf(request, lambda t: _signin_form(request, t, rd, "Invalid user name or password.", 401))
    now = runtime.clock()
    signed_in = runtime.login.signed_in_with_password(user)
    active = await runtime.mfa.is_enrolled(user.username)
    response = see_other(page_url(request, "challenge", rd) if active else rd)
    cookies.set_session(response, runtime.settings, runtime.keys.session_keyring, signed_in.session, now)
    return response


@routes.post("/signin/passkey")
@page_errors
async def signin_with_passkey(request: web.Request) -> web.StreamResponse:
    """A passkey's answer, posted by the script as a form: both factors at once (``webauthn_api.passkey_signed_in``),
    then on to ``rd``; a refusal shows the sign-in page again, saying why."""
    passkey_services(request)
    fields = await posted(request)
    rd = return_to(request, fields.get("rd"))
    try:
        ceremony_id, credential = answer_fields(fields)
        signed_in = await passkey_signed_in(request, ceremony_id, credential)
    except (errors.CeremonyExpired, errors.InvalidCode, errors.BadRequest, errors.InvalidCredentials) as error:
        message, status = webauthn_html.refusal(error), status_of(error)
        return with_csrf(request, lambda t: _signin_form(request, t, rd, status=status, passkey_error=message))
    except errors.LockedOut as error:
        log_unavailable(error)
        return error_page(request, error)
    runtime = request.app[RUNTIME]
    response = see_other(rd)
    cookies.set_session(response, runtime.settings, runtime.keys.session_keyring, signed_in.session, runtime.clock())
    cookies.clear_pending(response, runtime.settings)
    return response


# -- the MFA challenge ----------------------------------------------------------------------------------------

CODE_ERROR = "code-error"


def code_advice(code: str) -> str:
    """What to try next, for the kind of code that was typed: a backup code has no "newest" one."""
    if normalise_backup_code(code.strip()) is not None:
        return "Each backup code works once: use one you have not used yet."
    return "Wait for the next code in your app, and check that your phone's clock is right."


def _challenge_form(
    request: web.Request,
    token: str,
    rd: str,
    error: str = "",
    status: int = 200,
    *,
    offer: Offer = CODES_ONLY,
    key_error: str = "",
    remember: float | None = None,
    notice: str = "",
) -> web.Response:
    """The challenge: the user's security keys first (when they have one), then the code form (when they have an
    authenticator app); a user with keys only gets no code form, and without the script an explanation instead."""
    prefix = request.app[RUNTIME].settings.prefix

    def remember_box(field_id: str) -> str:
        """The offer to remember this device, one per form that completes the challenge (none without an age)."""
        if remember is None:
            return ""
        return html.checkbox("remember", f"Remember this device for {html.duration(remember)}", field_id=field_id)

    fields = (
        html.field(
            "code",
            "Authentication code or backup code",
            autocomplete="one-time-code",
            extra='inputmode="text" maxlength="20" autofocus',
            error_id=CODE_ERROR if error else "",
        )
        + (html.error(CODE_ERROR, error) if error else "")
        + remember_box("remember")
        + html.hidden("rd", rd)
        + html.hidden(csrf.FIELD, token)
    )
    body = html.paragraph("Enter the code from your authenticator app, or one of your backup codes.") + html.form(
        prefix + "/challenge", fields, "Verify"
    )
    if not offer.keys:
        return render(request, "Two-factor authentication", body, status)
    keys = webauthn_html.challenge_keys(
        prefix + "/challenge/webauthn",
        prefix + "/challenge/webauthn/options",
        remember_box("remember-key") + html.hidden("rd", rd) + html.hidden(csrf.FIELD, token),
        error=key_error,
        codes=offer.codes,
    )
    shown = (html.paragraph(notice) if notice else "") + keys + (body if offer.codes else "")
    return render(request, "Two-factor authentication", shown, status, script=True)


def offer_of(request: web.Request, factors: Factors) -> Offer:
    """What the challenge offers a user: their keys when WebAuthn is on, codes when they have an app."""
    return Offer(keys=request.app[RUNTIME].webauthn is not None and factors.webauthn > 0, codes=factors.totp)


async def challenge_offer(request: web.Request, user_id: str) -> Offer:
    return offer_of(request, await request.app[RUNTIME].mfa.factors(user_id))


@routes.get("/challenge")
@page_errors
async def challenge_page(request: web.Request) -> web.StreamResponse:
    subject = await require_subject(request)
    runtime = request.app[RUNTIME]
    rd = return_to(request)
    factors = await runtime.mfa.factors(subject.user_id)
    if request.query.get(REQUIRE) == PHISHING_RESISTANT and subject.pending_id is None:
        return await _security_key_required(request, rd, factors)
    if not factors.enrolled:
        self_service = runtime.settings.enrollment.unenrolled == "enroll"
        if not self_service and not await runtime.mfa.has_pending(subject.user_id):
            return render_message(
                request,
                403,
                "Two-factor authentication required",
                "This account has no second factor yet. Ask an administrator to set one up.",
            )
        return see_other(page_url(request, "enroll", rd))
    remember = devices.offered_age(request, rd) if subject.factor else None
    if remember is not None:  # a remembered device skips the code, for a rule that accepts one
        stood_in = await devices.stand_in(request, subject.user_id, subject.factor, remember)
        if stood_in is not None:
            return await complete(request, subject, stood_in, rd)
    offer = offer_of(request, factors)
    if not offer.keys and not offer.codes:  # keys only, and WebAuthn turned off since they were registered
        return render_message(
            request,
            403,
            "Security keys are turned off",
            "Your second factor is a security key or passkey, which this gateway does not accept at the moment. "
            "Ask an administrator to turn security keys back on or to reset your two-factor authentication.",
        )
    return with_csrf(request, lambda token: _challenge_form(request, token, rd, offer=offer, remember=remember))


async def _security_key_required(request: web.Request, rd: str, factors: Factors) -> web.StreamResponse:
    """The rule guarding ``rd`` demands a phishing-resistant method: a code would not satisfy it (and a remembered
    device never does), so the page offers only the user's keys, or sends a user without one to register one."""
    why = (
        "This address accepts only a security key or passkey: a code from an authenticator app or a backup code is "
        "not enough here, because a look-alike site could ask you for one."
    )
    if offer_of(request, factors).keys:
        keys_only = Offer(keys=True, codes=False)
        return with_csrf(request, lambda token: _challenge_form(request, token, rd, offer=keys_only, notice=why))
    settings = request.app[RUNTIME].settings
    register = (page_url(request, "security-keys", rd), "Register a security key or passkey")
    return html.message_page(
        settings.prefix,
        settings.redirects.allowed_hosts,
        200,
        "Security key required",
        f"{why} Your account has no security key or passkey yet: register one, then sign in with it.",
        links=(register, *way_back(request, again=False)),
    )


@routes.post("/challenge")
@page_errors
async def challenge(request: web.Request) -> web.StreamResponse:
    fields, subject, rd = await posted_by_subject(request)
    offered = devices.offered_age(request, rd) if subject.factor else None  # the rule's age, never the client's
    try:
        verified = await request.app[RUNTIME].mfa.verify(caller(request, subject.user_id), fields.get("code", ""))
    except (errors.InvalidCode, errors.BadRequest) as error:
        typed = fields.get("code", "")
        invalid = isinstance(error, errors.InvalidCode)
        message = f"That code is not valid. {code_advice(typed)}" if invalid else error.message
        status = status_of(error)
        offer = await challenge_offer(request, subject.user_id)
        return with_csrf(
            request, lambda t: _challenge_form(request, t, rd, message, status, offer=offer, remember=offered)
        )
    except errors.LockedOut as error:
        log_unavailable(error)
        busy = isinstance(error, errors.AttemptsBusy)  # no lock, only a moment's wait: no advice on the code
        advice = "" if busy else code_advice(fields.get("code", ""))
        return error_page(request, error, advice)
    remember = offered if fields.get("remember") == "1" else None
    return await complete(request, subject, verified, rd, remember=remember)


def ceremony_binding(subject: Subject) -> str:
    """What a key's ceremony on the challenge is bound to: the pending sign-in (a held application login, or a
    builtin login), else the signed-in first factor, as the API binds them."""
    if subject.pending_id is not None:
        return "pending:" + subject.pending_id
    assert subject.principal is not None
    return binding_of_principal(subject.principal)


@routes.post("/challenge/webauthn/options")
async def challenge_key_options(request: web.Request) -> web.Response:
    """Options for the challenge's key button (JSON, under the API's rules): for whoever the challenge acts for,
    including a held application login, which the API cannot complete."""
    await read_json(request)
    service = webauthn_service(request)
    subject = await subject_of(request)
    if subject is None:
        raise errors.Unauthenticated()
    started = await service.start_authentication(caller(request, subject.user_id), binding=ceremony_binding(subject))
    return ok({"ceremonyId": started.ceremony_id, "publicKey": started.options})


@routes.post("/challenge/webauthn")
@page_errors
async def challenge_with_key(request: web.Request) -> web.StreamResponse:
    """The key's answer, posted by the script as a form: verified like a code (same lockout), then completed as
    the code form completes (a held login released, or the session stepped up) and on to ``rd``."""
    fields, subject, rd = await posted_by_subject(request)
    offered = devices.offered_age(request, rd) if subject.factor else None  # the rule's age, never the client's
    service = webauthn_service(request)
    try:
        ceremony_id, credential = answer_fields(fields)
        verified = await service.verify(
            caller(request, subject.user_id),
            binding=ceremony_binding(subject),
            ceremony_id=ceremony_id,
            response=credential,
        )
    except (errors.CeremonyExpired, errors.InvalidCode, errors.BadRequest) as error:
        offer = await challenge_offer(request, subject.user_id)
        message, status = webauthn_html.refusal(error), status_of(error)
        return with_csrf(
            request,
            lambda t: _challenge_form(request, t, rd, "", status, offer=offer, key_error=message, remember=offered),
        )
    except errors.LockedOut as error:
        log_unavailable(error)
        return error_page(request, error)
    remember = offered if fields.get("remember") == "1" else None
    return await complete(request, subject, verified, rd, remember=remember)


async def complete(
    request: web.Request,
    subject: Subject,
    verified: Verified | DeviceMfa,
    rd: str,
    *,
    remember: float | None = None,
) -> web.StreamResponse:
    """MFA succeeded (or a remembered device stood in): release a held app login, or step the session up; with
    ``remember`` (seconds) trust this browser too; then continue to where the user was going."""
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    settings = runtime.settings
    method = verified.method if isinstance(verified, Verified) else verified
    if subject.pending_id is not None:
        released = await release_pending(runtime.pending, subject.pending_id, method, now=now, ttl=settings.session.ttl)
        if released is None:
            return render_message(
                request, 401, "Sign-in expired", "The sign-in took too long; please sign in again.", again=True
            )
        session = released.session
        response = replay(released.held) if released.held is not None else see_other(rd)
    else:
        assert subject.principal is not None
        session = await stepped_up_session(request, subject.principal, verified)
        response = see_other(rd)
    await set_session(request, response, session)
    cookies.clear_pending(response, settings)
    if remember is not None and subject.factor:
        await devices.remember(request, response, subject.user_id, subject.factor, remember)
    return response


# -- enrollment -----------------------------------------------------------------------------------------------


@routes.get("/enroll")
@page_errors
async def enroll_page(request: web.Request) -> web.StreamResponse:
    subject = await require_subject(request)
    rd = return_to(request)
    runtime = request.app[RUNTIME]
    if await runtime.mfa.is_enrolled(subject.user_id):
        return see_other(page_url(request, "challenge", rd))
    prefix = runtime.settings.prefix
    if runtime.settings.enrollment.unenrolled == "deny":
        if not await runtime.mfa.has_pending(subject.user_id):
            raise errors.EnrollmentDisabled()

        def confirm_only(token: str) -> web.Response:
            body = html.paragraph("Enter the code from the authenticator app your administrator set up.")
            return render(request, "Confirm two-factor authentication", body + _confirm_form(request, token, rd))

        return with_csrf(request, confirm_only)

    # A security key instead, for a signed-in first factor (a held application login has no session to add it to)
    keys = runtime.webauthn is not None and subject.principal is not None
    instead = html.actions([(page_url(request, "security-keys", rd), "Use a security key or passkey instead")])

    def build(token: str) -> web.Response:
        body = html.paragraph(
            "This address needs a second factor. Set up an authenticator app "
            "(such as Google Authenticator, Authy, 1Password or FreeOTP) to continue."
        ) + html.form(
            prefix + "/enroll", html.hidden("rd", rd) + html.hidden(csrf.FIELD, token), "Set up authenticator app"
        )
        return render(request, "Set up two-factor authentication", body + (instead if keys else ""))

    return with_csrf(request, build)


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def codes_block(codes: list[str]) -> str:
    items = "".join(f"<li>{escape(code)}</li>" for code in codes)
    text = "mfa-gateway backup codes (each works once)\n\n" + "\n".join(codes) + "\n"
    href = "data:text/plain;charset=utf-8;base64," + base64.b64encode(text.encode()).decode("ascii")
    return (
        html.paragraph("Backup codes: each works once if you lose your phone. They are shown only now.", "notice")
        + f'<ul class="codes" aria-label="Backup codes">{items}</ul>'
        + f'<p><a download="backup-codes.txt" href="{escape(href)}">Download backup codes as text</a></p>'
    )


def _confirm_form(request: web.Request, token: str, rd: str, error: str = "") -> str:
    prefix = request.app[RUNTIME].settings.prefix
    fields = (
        html.field(
            "code",
            "Code from your app",
            autocomplete="one-time-code",
            extra='inputmode="numeric" maxlength="8"',
            error_id=CODE_ERROR if error else "",
        )
        + (html.error(CODE_ERROR, error) if error else "")
        + html.hidden("rd", rd)
        + html.hidden(csrf.FIELD, token)
    )
    return html.form(prefix + "/enroll/confirm", fields, "Confirm and continue")


def _manual_settings(params: TotpParams) -> str:
    """What to set beside a key typed by hand, when it is not what every app assumes (SHA1, 6 digits, 30 s): an app
    left at its defaults would show codes that never match. Nothing when the defaults apply."""
    if params == TotpParams():
        return ""
    text = (
        f"In your app's advanced options, also choose time-based codes with algorithm {params.algorithm.value},"
        f" {params.digits} digits and a period of {params.period} seconds."
    )
    return f'<p id="manual-settings">{escape(text)}</p>'


def _setup_page(request: web.Request, start: EnrollmentStart, token: str, rd: str) -> web.Response:
    body = (
        html.paragraph("1. Scan this QR code with your authenticator app.")
        + f'<img class="qr" src="{escape(start.qr_png)}" alt="QR code for your authenticator app">'
        + '<figure class="key"><figcaption id="manual-key-label">Or enter this key by hand:</figcaption>'
        + f'<p><code id="manual-key">{escape(_grouped(start.secret))}</code></p></figure>'
        + _manual_settings(start.params)
        + codes_block(start.backup_codes)
        + html.paragraph(f"2. Enter the {start.params.digits}-digit code your app shows now.")
        + _confirm_form(request, token, rd)
    )
    return render(request, "Set up two-factor authentication", body)


@routes.post("/enroll")
@page_errors
async def enroll(request: web.Request) -> web.StreamResponse:
    _, subject, rd = await posted_by_subject(request)
    runtime = request.app[RUNTIME]
    start = await start_self_enrollment(
        runtime.mfa, caller(request, subject.user_id), runtime.settings.enrollment.unenrolled
    )
    return with_csrf(request, lambda token: _setup_page(request, start, token, rd))


@routes.post("/enroll/confirm")
@page_errors
async def enroll_confirm(request: web.Request) -> web.StreamResponse:
    fields, subject, rd = await posted_by_subject(request)
    try:
        await request.app[RUNTIME].mfa.activate(caller(request, subject.user_id), fields.get("code", ""))
    except (errors.InvalidCode, errors.BadRequest) as error:
        status = status_of(error)
        shown = (
            "That code did not match. Check the time on your phone and try the newest code."
            if isinstance(error, errors.InvalidCode)
            else error.message
        )

        def retry(token: str) -> web.Response:
            body = _confirm_form(request, token, rd, shown)
            return render(request, "Set up two-factor authentication", body, status)

        return with_csrf(request, retry)
    return await complete(request, subject, Verified(method="otp"), rd)


# -- account: backup codes, disable, sign out ----------------------------------------------------------------


async def _mfa_principal(request: web.Request) -> Principal:
    """The signed-in user with a second factor; otherwise the challenge or sign-in page is sent instead."""
    principal = request.app[IDENTIFIER].identify(request)
    if principal is None or principal.mfa_time is None:
        runtime = request.app[RUNTIME]
        raise _Respond(
            see_other(page_url(request, "challenge" if principal else "signin", request.path_qs))
            if (principal or runtime.login)
            else render_message(request, 401, "Sign-in required", "Sign in first.", again=True)
        )
    return principal


def _code_form(request: web.Request, action: str, submit: str, token: str, *, danger: bool = False) -> str:
    fields = html.field(
        "code", "Current authentication code or backup code", autocomplete="one-time-code"
    ) + html.hidden(csrf.FIELD, token)
    return html.form(
        request.app[RUNTIME].settings.prefix + action, fields, submit, css_class="secondary" if danger else ""
    )


@routes.get("/backup-codes")
@page_errors
async def backup_codes_page(request: web.Request) -> web.StreamResponse:
    principal = await _mfa_principal(request)
    status = await request.app[RUNTIME].mfa.status(principal.user_id)

    def build(token: str) -> web.Response:
        body = (
            html.paragraph(f"You have {status.backup_codes_left} unused backup codes.")
            + html.paragraph("A new set replaces all of them.")
            + _code_form(request, "/backup-codes", "Make new backup codes", token)
            + html.actions([(request.app[RUNTIME].settings.prefix + "/account", "Your account")])
        )
        return render(request, "Backup codes", body)

    return with_csrf(request, build)


@routes.post("/backup-codes")
@page_errors
async def backup_codes(request: web.Request) -> web.StreamResponse:
    fields = await posted(request)
    principal = await _mfa_principal(request)
    codes = await request.app[RUNTIME].mfa.regenerate_backup_codes(
        caller(request, principal.user_id), fields.get("code", "")
    )
    return render(request, "New backup codes", codes_block(codes) + html.paragraph("Your old codes no longer work."))


@routes.get("/disable")
@page_errors
async def disable_page(request: web.Request) -> web.StreamResponse:
    await _mfa_principal(request)  # signed in with a second factor, or sent to get one
    return with_csrf(
        request,
        lambda token: render(
            request,
            "Turn off two-factor authentication",
            html.paragraph("Without a second factor, protected pages will ask you to set one up again.")
            + _code_form(request, "/disable", "Turn off two-factor authentication", token, danger=True),
        ),
    )


@routes.post("/disable")
@page_errors
async def disable(request: web.Request) -> web.StreamResponse:
    fields = await posted(request)
    principal = await _mfa_principal(request)
    runtime = request.app[RUNTIME]
    await disable_everywhere(
        runtime.mfa,
        runtime.revocations,
        runtime.devices,
        caller(request, principal.user_id),
        fields.get("code", ""),
        longest_session=longest_session(runtime.settings),
    )
    response = render_message(
        request,
        200,
        "Two-factor authentication is off",
        "You have been signed out everywhere. Sign in again to continue.",
        again=True,
    )
    signed_out(response, request, forget_device=True)
    return response


@routes.get("/logout")
@page_errors
async def logout_page(request: web.Request) -> web.StreamResponse:
    prefix = request.app[RUNTIME].settings.prefix
    return with_csrf(
        request,
        lambda token: render(
            request, "Sign out", html.form(prefix + "/logout", html.hidden(csrf.FIELD, token), "Sign out")
        ),
    )


@routes.post("/logout")
@page_errors
async def logout(request: web.Request) -> web.StreamResponse:
    await posted(request)
    await revoke_current(request)
    response = render_message(request, 200, "Signed out", "You are signed out. You can close this window.", again=True)
    signed_out(response, request)
    return response


@routes.get("/static/gateway.css")
async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(
        text=html.STYLESHEET, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )
