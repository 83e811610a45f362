"""Login interception, the use case: hold an app's successful login until MFA succeeds, then release it.

The HTTP side (forwarding the login form, reading the app's answer and cookies, replaying the held answer) is in
``web.interception``; here the held answer becomes a pending challenge (sealed in shared state, audited as
``login.intercept``), and completing a pending sign-in issues the session after MFA (``service.sessions``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mfa_gateway.core.model import AuditEvent
from mfa_gateway.core.session import Session, binding_of
from mfa_gateway.ports import AuditSink
from mfa_gateway.service.pending import HeldResponse, Pending, PendingChallenges
from mfa_gateway.service.sessions import FirstFactorProof, SecondFactor, session_after_mfa


@dataclass(frozen=True, slots=True)
class Released:
    """A pending sign-in completed: its new session, and the app's held answer to send (None: a builtin login)."""

    session: Session
    held: HeldResponse | None


async def hold_app_login(
    pending: PendingChallenges,
    audit: AuditSink,
    *,
    user_id: str,
    app_cookie: str,
    return_to: str,
    held: HeldResponse,
    now: float,
    client: str | None,
) -> str:
    """Hold the app's answer to a successful login as a pending challenge (its id is returned), bound to a hash of
    the app's session cookie, so the session after MFA belongs to that app session only."""
    pending_id = await pending.create(
        Pending(
            kind="intercept",
            user_id=user_id,
            auth_time=now,
            methods=("app",),
            binding=binding_of("app:" + app_cookie),
            return_to=return_to,
            held=held,
        )
    )
    await audit.emit(AuditEvent(at=now, event="login.intercept", result="held", user_id=user_id, client_ip=client))
    return pending_id


async def release_pending(
    pending: PendingChallenges, pending_id: str, method: SecondFactor, *, now: float, ttl: float
) -> Released | None:
    """MFA by ``method`` (or a remembered device) succeeded for a pending sign-in (an app's held login, or a builtin
    login answered on a page):
    take the challenge (at most once) and issue its session; None if it expired or was already taken."""
    taken = await pending.take(pending_id)
    if taken is None:
        return None
    proof = FirstFactorProof(taken.user_id, taken.methods, taken.auth_time, taken.binding)
    return Released(await session_after_mfa(proof, method, now=now, ttl=ttl), taken.held)
