"""The remembered-devices JSON API under ``{prefix}/api/devices``: list the user's remembered devices, forget one.

Both need an MFA session (a real second factor, not a device's stand-in: a stolen device cookie cannot manage the
devices), as the security-key list does. Bodies and errors as in ``web.api``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mfa_gateway.core.devices import DeviceGrant
from mfa_gateway.core.errors import DeviceNotFound, SecondFactorRequired
from mfa_gateway.service.mfa import Caller
from mfa_gateway.web import cookies, devices
from mfa_gateway.web.api import caller_of, ok
from mfa_gateway.web.keys import RUNTIME

routes = web.RouteTableDef()


def _mfa_caller(request: web.Request) -> Caller:
    principal, caller = caller_of(request)
    if principal.mfa_time is None:
        raise SecondFactorRequired()
    return caller


def device_json(grant: DeviceGrant, current: str | None) -> dict[str, Any]:
    return {
        "id": grant.id,
        "label": grant.label,
        "createdAt": grant.created_at,
        "expiresAt": grant.expires_at,
        "lastUsedAt": grant.last_used_at,
        "current": devices.is_current(current, grant.token_hash),
    }


@routes.get("/api/devices")
async def remembered(request: web.Request) -> web.Response:
    caller = _mfa_caller(request)
    grants = await request.app[RUNTIME].devices.grants(caller.user_id)
    current = devices.current_hash(request)
    return ok({"devices": [device_json(grant, current) for grant in grants]})


@routes.delete("/api/devices/{device_id}")
async def forget(request: web.Request) -> web.Response:
    """Forget one remembered device: its next sign-in asks for the code. Sessions it stepped up live on (sign out
    everywhere ends them too)."""
    caller = _mfa_caller(request)
    runtime = request.app[RUNTIME]
    device_id = request.match_info["device_id"]
    grant = next((g for g in await runtime.devices.grants(caller.user_id) if g.id == device_id), None)
    if grant is None or not await runtime.devices.revoke(caller, grant.id):
        raise DeviceNotFound()
    response = ok({"device": device_json(grant, devices.current_hash(request))})
    if devices.is_current(devices.current_hash(request), grant.token_hash):
        cookies.clear_device(response, runtime.settings)
    return response
