"""The session a user gets after MFA succeeds: a new id, the MFA method added, bound to the same first factor."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.core.session import Session
from mfa_gateway.service.mfa import Verified
from mfa_gateway.web.identity import Principal
from mfa_gateway.web.keys import RUNTIME


async def stepped_up_session(request: web.Request, principal: Principal, verified: Verified) -> Session:
    """A new session (new id) at the MFA level, bound to the same first factor."""
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    if principal.session is not None:
        # The session being replaced is revoked, so a copy saved before the step-up dies with sign-out too.
        await runtime.revocations.revoke_session(principal.session)
        return principal.session.stepped_up(verified.method, now)
    first_factor = principal.first_factor
    return Session.start(
        principal.user_id,
        (first_factor.source, verified.method),
        now=now,
        ttl=runtime.settings.session.ttl,
        auth_time=first_factor.auth_time or now,
        binding=first_factor.binding,
        mfa_time=now,
    )
