"""The session a user gets after MFA succeeds on a page or the API: the principal's first factor (or its session)
handed to ``service.sessions.session_after_mfa``, which issues it."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.core.devices import DeviceMfa
from mfa_gateway.core.session import Session
from mfa_gateway.service.mfa import Verified
from mfa_gateway.service.sessions import FirstFactorProof, session_after_mfa
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import RUNTIME


async def stepped_up_session(request: web.Request, principal: Principal, verified: Verified | DeviceMfa) -> Session:
    """A new session (new id) at the MFA level (or stepped up by a remembered device), bound to the same first
    factor; a session it replaces is revoked."""
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    first_factor = principal.first_factor
    before = principal.session or FirstFactorProof(
        principal.user_id, (first_factor.source,), first_factor.auth_time or now, first_factor.binding
    )
    method = verified.method if isinstance(verified, Verified) else verified
    return await session_after_mfa(
        before, method, now=now, ttl=runtime.settings.session.ttl, revoke=runtime.revocations.revoke_session
    )
