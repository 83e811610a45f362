"""Where sessions are issued: the one function for the session after MFA, and the first-factor-only session.

Every way to a second factor ends in ``session_after_mfa``: the builtin login (password and code in one call, or a
pending challenge), a held app login released after MFA, and the step-up of a signed-in first factor (a page, the
API), by a second factor or by a remembered device standing in for one. So the rules live in one place: the
session after MFA always has a new id, records the method and the time of MFA (and, for a phishing-resistant
method, that time apart; a device's stand-in apart, see ``core.devices``), stays bound to the first factor it rests
on, and a session it replaces is revoked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mfa_gateway.core.devices import DeviceMfa
from mfa_gateway.core.methods import DEVICE, PHISHING_RESISTANT
from mfa_gateway.core.session import Session

Revoke = Callable[[Session], Awaitable[None]]
SecondFactor = str | DeviceMfa
"""How MFA was met: a second factor's ``amr`` value (``otp``, ``backup``, ``hwk``), or a remembered device."""


@dataclass(frozen=True, slots=True)
class FirstFactorProof:
    """A first factor that passed and has no session yet: who, how (RFC 8176 ``amr`` values), when, and the hash of
    the credential the session is bound to (empty for the gateway's own sign-in, which the session itself is)."""

    user_id: str
    methods: tuple[str, ...]
    auth_time: float
    binding: str = ""
    email: str | None = None
    groups: tuple[str, ...] = ()


def first_factor_session(proof: FirstFactorProof, *, now: float, ttl: float) -> Session:
    """The session of a first factor alone (a password sign-in before any MFA): no MFA time."""
    return _start(proof, proof.methods, now=now, ttl=ttl, mfa_time=None)


async def session_after_mfa(
    before: FirstFactorProof | Session,
    method: SecondFactor,
    *,
    now: float,
    ttl: float,
    revoke: Revoke | None = None,
) -> Session:
    """The session once MFA by ``method`` succeeded ``now``: always a new id, the method added, MFA time ``now``;
    for a remembered device, ``device`` added and its stand-in recorded instead, the MFA time left as it was.

    After a first factor with no session: a new session of ``ttl`` seconds, bound as the first factor is. After a
    session (a step-up): that session with its expiry and binding kept, and the old one revoked first through
    ``revoke`` (required then), so a copy of the old cookie saved before the step-up dies with sign-out too.
    """
    if isinstance(before, Session):
        if revoke is None:
            raise ValueError("a session that MFA replaces must be revoked")
        await revoke(before)
        return before.remembered(method) if isinstance(method, DeviceMfa) else before.stepped_up(method, now)
    if isinstance(method, DeviceMfa):
        return _start(before, (*before.methods, DEVICE), now=now, ttl=ttl, mfa_time=None, device=method)
    resistant = now if method in PHISHING_RESISTANT else None
    return _start(before, (*before.methods, method), now=now, ttl=ttl, mfa_time=now, phishing_resistant_time=resistant)


def _start(
    proof: FirstFactorProof,
    methods: tuple[str, ...],
    *,
    now: float,
    ttl: float,
    mfa_time: float | None,
    device: DeviceMfa | None = None,
    phishing_resistant_time: float | None = None,
) -> Session:
    return Session.start(
        proof.user_id,
        methods,
        now=now,
        ttl=ttl,
        auth_time=proof.auth_time,
        binding=proof.binding,
        mfa_time=mfa_time,
        phishing_resistant_time=phishing_resistant_time,
        email=proof.email,
        groups=proof.groups,
        device=device,
    )
