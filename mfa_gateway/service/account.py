"""Account actions that span more than the MFA service: self-enrollment under the policy, MFA off everywhere.

Shared by the JSON API and the pages, so neither can forget the policy check or the revocation.
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
