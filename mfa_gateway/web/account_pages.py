"""The account page, ``{prefix}/account``: the user's live sessions, remembered devices and second factors, with
"sign out everywhere else". It needs an MFA session (a real second factor), as the APIs behind it do; every action
is a plain form with a CSRF token, so the page works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from aiohttp import web

from mfa_gateway.core import errors
from mfa_gateway.core.devices import DeviceGrant
from mfa_gateway.core.session import Session
from mfa_gateway.core.session_records import SessionRecord
from mfa_gateway.web import csrf, devices, html
from mfa_gateway.web.keys import RUNTIME
from mfa_gateway.web.pages import _mfa_principal, caller, page_errors, posted, render, see_other, with_csrf
from mfa_gateway.web.sessions_api import sign_out_others
from mfa_gateway.web.webauthn_pages import _when

routes = web.RouteTableDef()
TITLE = "Your account"


def _button(request: web.Request, action: str, token: str, submit: str, **values: str) -> str:
    fields = "".join(html.hidden(name, value) for name, value in values.items()) + html.hidden(csrf.FIELD, token)
    return html.form(request.app[RUNTIME].settings.prefix + action, fields, submit, css_class="secondary")


def _sessions(request: web.Request, token: str, records: Sequence[SessionRecord], current: Session | None) -> str:
    items = []
    for record in records:
        here = current is not None and record.sid == current.sid
        name = record.label + (" (this session)" if here else "")
        details = (
            f"<dt>Signed in</dt><dd>{_when(record.created_at)}</dd><dt>Ends</dt><dd>{_when(record.expires_at)}</dd>"
        )
        end = "" if here else _button(request, "/account/sessions/end", token, f"End {record.label}", id=record.id)
        items.append(f'<li><h3>{escape(name)}</h3><dl class="key">{details}</dl>{end}</li>')
    listing = f'<ul class="keys">{"".join(items)}</ul>' if items else html.paragraph("No other sessions.")
    return (
        "<h2>Sessions</h2>"
        + html.paragraph("Where you are signed in. The time shown is when each session began or was last verified.")
        + listing
        + html.paragraph(
            "Sign out everywhere else: every other session ends, and every other remembered device is forgotten."
        )
        + _button(request, "/account/end-others", token, "Sign out everywhere else")
    )


def _devices(request: web.Request, token: str, grants: Sequence[DeviceGrant]) -> str:
    here = devices.current_hash(request)
    items = []
    for grant in grants:
        current = devices.is_current(here, grant.token_hash)
        name = grant.label + (" (this browser)" if current else "")
        details = (
            f"<dt>Remembered</dt><dd>{_when(grant.created_at)}</dd><dt>Until</dt><dd>{_when(grant.expires_at)}</dd>"
        )
        forget = _button(request, "/account/devices/forget", token, f"Forget {grant.label}", id=grant.id)
        items.append(f'<li><h3>{escape(name)}</h3><dl class="key">{details}</dl>{forget}</li>')
    listing = f'<ul class="keys">{"".join(items)}</ul>' if items else html.paragraph("No remembered devices.")
    return "<h2>Remembered devices</h2>" + listing


@routes.get("/account")
@page_errors
async def account_page(request: web.Request) -> web.StreamResponse:
    principal = await _mfa_principal(request)
    runtime = request.app[RUNTIME]
    prefix = runtime.settings.prefix
    records = await runtime.sessions.live(principal.user_id)
    grants = await runtime.devices.grants(principal.user_id)
    status = await runtime.mfa.status(principal.user_id)
    keys = (
        "<h2>Security keys and passkeys</h2>"
        + html.paragraph(f"You have {status.webauthn} security keys and passkeys.")
        + html.actions([(prefix + "/security-keys", "Manage security keys and passkeys")])
        if runtime.webauthn is not None
        else ""
    )
    app = (
        "<h2>Authenticator app and backup codes</h2>"
        + html.paragraph(f"You have {status.backup_codes_left} unused backup codes.")
        + html.actions(
            [
                (prefix + "/backup-codes", "Make new backup codes"),
                (prefix + "/disable", "Turn off two-factor authentication"),
            ]
        )
    )

    def build(token: str) -> web.Response:
        body = _sessions(request, token, records, principal.session) + _devices(request, token, grants) + keys + app
        return render(request, TITLE, body)

    return with_csrf(request, build)


@routes.post("/account/sessions/end")
@page_errors
async def end_session(request: web.Request) -> web.StreamResponse:
    fields = await posted(request)
    principal = await _mfa_principal(request)
    if not await request.app[RUNTIME].sessions.end(caller(request, principal.user_id), fields.get("id", "")):
        raise errors.SessionNotFound()
    return see_other(request.app[RUNTIME].settings.prefix + "/account")


@routes.post("/account/devices/forget")
@page_errors
async def forget_device(request: web.Request) -> web.StreamResponse:
    fields = await posted(request)
    principal = await _mfa_principal(request)
    runtime = request.app[RUNTIME]
    if not await runtime.devices.revoke(caller(request, principal.user_id), fields.get("id", "")):
        raise errors.DeviceNotFound()
    return see_other(runtime.settings.prefix + "/account")


@routes.post("/account/end-others")
@page_errors
async def end_others(request: web.Request) -> web.StreamResponse:
    await posted(request)
    principal = await _mfa_principal(request)
    response = see_other(request.app[RUNTIME].settings.prefix + "/account")
    await sign_out_others(request, response, principal.session, caller(request, principal.user_id))
    return response
