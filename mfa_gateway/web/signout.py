"""Ending sessions: revoke on every replica, then expire the cookies in the browser."""

from __future__ import annotations

from aiohttp import web

from mfa_gateway.web import cookies
from mfa_gateway.web.keys import IDENTIFIER, RUNTIME


async def revoke_current(request: web.Request) -> None:
    principal = request.app[IDENTIFIER].identify(request)
    if principal is None:
        return
    revocations = request.app[RUNTIME].revocations
    if principal.session is not None:
        await revocations.revoke_session(principal.session)
    first_factor = principal.first_factor
    if first_factor.token_id is not None and first_factor.token_expires is not None:
        await revocations.revoke_session_id(first_factor.token_id, first_factor.token_expires)


def signed_out(response: web.StreamResponse, request: web.Request, *, forget_device: bool = False) -> None:
    """Expire the gateway's cookies, and in login-interception mode the app's session cookie too. The device cookie
    outlives a plain sign-out (remembering the device is its point); ``forget_device`` expires it too, where its
    grant was revoked with everything else."""
    settings = request.app[RUNTIME].settings
    attributes = {"path": "/", "secure": settings.session.secure, "httponly": True, "samesite": "Lax"}
    response.del_cookie(settings.session.cookie_name, **attributes)  # type: ignore[arg-type]
    cookies.clear_pending(response, settings)
    if forget_device:
        cookies.clear_device(response, settings)
    login = settings.identity.upstream_login
    if login is not None:
        response.del_cookie(login.session_cookie, path="/")
