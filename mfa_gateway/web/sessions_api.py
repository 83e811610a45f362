"""The sessions JSON API under ``{prefix}/api/sessions``: list the user's live sessions, end one, end every other.

All need an MFA session (a real second factor), as the devices API does. Sessions are named by their record's
public id, never by their sid. Ending them reaches every replica through the shared revocations.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mfa_gateway.core.errors import SecondFactorRequired, SessionNotFound
from mfa_gateway.core.session import Session
from mfa_gateway.core.session_records import SessionRecord
from mfa_gateway.runtime import longest_session
from mfa_gateway.service.mfa import Caller
from mfa_gateway.web import devices
from mfa_gateway.web.api import caller_of, ok, set_session
from mfa_gateway.web.keys import RUNTIME

routes = web.RouteTableDef()


def mfa_session(request: web.Request) -> tuple[Session | None, Caller]:
    """The caller, who must have passed a real second factor, and their session cookie's session (None with a
    bearer JWT)."""
    principal, caller = caller_of(request)
    if principal.mfa_time is None:
        raise SecondFactorRequired()
    return principal.session, caller


def session_json(record: SessionRecord, current: Session | None) -> dict[str, Any]:
    return {
        "id": record.id,
        "label": record.label,
        "methods": list(record.methods),
        "signedInAt": record.created_at,
        "expiresAt": record.expires_at,
        "current": current is not None and record.sid == current.sid,
    }


@routes.get("/api/sessions")
async def live(request: web.Request) -> web.Response:
    current, caller = mfa_session(request)
    records = await request.app[RUNTIME].sessions.live(caller.user_id)
    return ok({"sessions": [session_json(record, current) for record in records]})


@routes.delete("/api/sessions/{session_id}")
async def end(request: web.Request) -> web.Response:
    """End one session on every replica (the current one too: that is signing out here)."""
    _, caller = mfa_session(request)
    if not await request.app[RUNTIME].sessions.end(caller, request.match_info["session_id"]):
        raise SessionNotFound()
    return ok(message="Session ended")


@routes.post("/api/sessions/end-others")
async def end_others(request: web.Request) -> web.Response:
    """Sign out everywhere else: every other session and JWT ends on every replica, every remembered device but
    this browser's is forgotten, and this browser gets its session again under a new id."""
    current, caller = mfa_session(request)
    response = ok(message="Signed out everywhere else")
    await sign_out_others(request, response, current, caller)
    return response


async def sign_out_others(
    request: web.Request, response: web.StreamResponse, current: Session | None, caller: Caller
) -> None:
    """What the page's button and the API do: see ``end_others``. With no session cookie (a bearer JWT) there is
    no current session to keep: every session ends."""
    runtime = request.app[RUNTIME]
    if current is None:
        await runtime.revocations.revoke_user(caller.user_id, longest_session(runtime.settings))
    else:
        await set_session(request, response, await runtime.sessions.end_others(caller, current))
    here = devices.current_hash(request)
    for grant in await runtime.devices.grants(caller.user_id):
        if not devices.is_current(here, grant.token_hash):
            await runtime.devices.revoke(caller, grant.id)
