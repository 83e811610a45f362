"""Account actions that span more than the MFA service: self-enrollment under the policy, MFA off everywhere.

Shared by the JSON API, the pages, the admin listener and the CLI, so none can forget the policy check or the
revocation: wherever MFA ends for a user (disable, reset, the last security key removed) or the user signs out
everywhere, every session and JWT issued to them before ends too, on every replica, and every remembered device.
"""

from __future__ import annotations

from typing import Literal

from mfa_gateway.core.errors import EnrollmentDisabled
from mfa_gateway.service.devices import DeviceService
from mfa_gateway.service.mfa import Caller, EnrollmentStart, MfaService
from mfa_gateway.service.revocations import RevocationView


async def start_self_enrollment(
    mfa: MfaService, caller: Caller, unenrolled: Literal["enroll", "deny"]
) -> EnrollmentStart:
    """Start enrollment for the caller, unless ``enrollment.unenrolled: deny`` leaves it to an administrator."""
    if unenrolled == "deny":
        raise EnrollmentDisabled()
    return await mfa.start_enrollment(caller)


async def end_everywhere(
    revocations: RevocationView, devices: DeviceService, caller: Caller, *, longest_session: float, via: str
) -> None:
    """Sign the caller out everywhere: every session and JWT issued to them until now revoked on every replica, and
    every remembered device forgotten (audited as ``device.revoked``). ``longest_session``: how long an old session
    or JWT could still be presented."""
    await revocations.revoke_user(caller.user_id, longest_session)
    await devices.revoke_all(caller, via=via)


async def disable_everywhere(
    mfa: MfaService,
    revocations: RevocationView,
    devices: DeviceService,
    caller: Caller,
    token: str,
    *,
    longest_session: float,
) -> None:
    """Turn MFA off (needs a current code; audited), then end every session and remembered device of the user."""
    await mfa.disable(caller, token)
    await end_everywhere(revocations, devices, caller, longest_session=longest_session, via="disable")


async def reset_everywhere(
    mfa: MfaService,
    revocations: RevocationView,
    devices: DeviceService,
    user_id: str,
    *,
    longest_session: float,
    via: str,
) -> bool:
    """An administrator's reset (a lost phone): the user's sessions, tokens and remembered devices ended on every
    replica first (so a failure after it leaves nothing alive), then the enrollment deleted and lockouts lifted;
    audited. True if there was an enrollment."""
    await end_everywhere(revocations, devices, Caller(user_id, None), longest_session=longest_session, via=via)
    return await mfa.reset(user_id, via=via)
