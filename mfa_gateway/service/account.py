"""Account actions that span more than the MFA service: self-enrollment under the policy, MFA off everywhere.

Shared by the JSON API, the pages, the admin listener and the CLI, so none can forget the policy check or the
revocation: wherever MFA ends for a user, every session and JWT issued to them before ends too, on every replica.
"""

from __future__ import annotations

from typing import Literal

from mfa_gateway.core.errors import EnrollmentDisabled
from mfa_gateway.service.mfa import Caller, EnrollmentStart, MfaService
from mfa_gateway.service.revocations import RevocationView


async def start_self_enrollment(
    mfa: MfaService, caller: Caller, unenrolled: Literal["enroll", "deny"]
) -> EnrollmentStart:
    """Start enrollment for the caller, unless ``enrollment.unenrolled: deny`` leaves it to an administrator."""
    if unenrolled == "deny":
        raise EnrollmentDisabled()
    return await mfa.start_enrollment(caller)


async def disable_everywhere(
    mfa: MfaService, revocations: RevocationView, caller: Caller, token: str, *, longest_session: float
) -> None:
    """Turn MFA off (needs a current code; audited) and revoke every session of the user on every replica."""
    await mfa.disable(caller, token)
    await revocations.revoke_user(caller.user_id, longest_session)


async def reset_everywhere(
    mfa: MfaService, revocations: RevocationView, user_id: str, *, longest_session: float, via: str
) -> bool:
    """An administrator's reset (a lost phone): the user's sessions and tokens revoked on every replica first (so a
    failure after it leaves nothing alive), then the enrollment deleted and lockouts lifted; audited. True if there
    was an enrollment. ``longest_session``: how long an old session or JWT could still be presented."""
    await revocations.revoke_user(user_id, longest_session)
    return await mfa.reset(user_id, via=via)
