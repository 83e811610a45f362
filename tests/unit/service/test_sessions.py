"""The one function that issues the session after MFA: new id, method and time recorded, binding kept, old revoked."""

from __future__ import annotations

import pytest

from mfa_gateway.core.session import Session
from mfa_gateway.service.sessions import FirstFactorProof, first_factor_session, session_after_mfa

PROOF = FirstFactorProof(
    "alice", ("app",), auth_time=900.0, binding="b1nd", email="alice@example.com", groups=("admins",)
)


async def test_after_a_first_factor_the_session_records_mfa_and_keeps_the_binding() -> None:
    """A first factor without a session gets a new one: its methods plus the MFA method, MFA time now, the first
    factor's time, binding, email and groups, valid for ``ttl`` from now."""
    session = await session_after_mfa(PROOF, "otp", now=1000.0, ttl=600.0)
    assert (session.user_id, session.methods, session.auth_time) == ("alice", ("app", "otp"), 900.0)
    assert (session.mfa_time, session.issued_at, session.last_seen, session.expires_at) == (
        1000.0,
        1000.0,
        1000.0,
        1600.0,
    )
    assert (session.binding, session.email, session.groups) == ("b1nd", "alice@example.com", ("admins",))
    again = await session_after_mfa(PROOF, "otp", now=1000.0, ttl=600.0)
    assert again.sid != session.sid


async def test_a_step_up_revokes_the_session_it_replaces_and_keeps_its_expiry() -> None:
    """A session stepped up gets a new id and the MFA method (once), keeps its expiry and binding, and the session
    it replaces is revoked before the new one is handed out."""
    before = Session.start("alice", ("hdr",), now=1000.0, ttl=600.0, auth_time=990.0, binding="b1nd")
    revoked: list[Session] = []

    async def revoke(session: Session) -> None:
        revoked.append(session)

    after = await session_after_mfa(before, "backup", now=1100.0, ttl=60.0, revoke=revoke)
    assert revoked == [before]
    assert after.sid != before.sid
    assert (after.methods, after.mfa_time, after.issued_at) == (("hdr", "backup"), 1100.0, 1100.0)
    assert (after.expires_at, after.binding, after.auth_time) == (before.expires_at, "b1nd", 990.0)
    again = await session_after_mfa(after, "backup", now=1200.0, ttl=60.0, revoke=revoke)
    assert again.methods == ("hdr", "backup") and revoked == [before, after]


async def test_a_session_is_never_replaced_without_being_revoked() -> None:
    """Replacing a session without a way to revoke it is a programming error, refused before anything is issued."""
    before = Session.start("alice", ("pwd",), now=1000.0, ttl=600.0, auth_time=1000.0)
    with pytest.raises(ValueError, match="revoked"):
        await session_after_mfa(before, "otp", now=1000.0, ttl=600.0)


def test_a_first_factor_alone_gets_a_session_without_mfa() -> None:
    """Before any MFA the session records no MFA time and only the first factor's methods."""
    session = first_factor_session(PROOF, now=1000.0, ttl=600.0)
    assert (session.methods, session.mfa_time, session.expires_at, session.binding) == (("app",), None, 1600.0, "b1nd")


async def test_the_time_of_a_phishing_resistant_method_is_kept_apart() -> None:
    """A WebAuthn step-up (hwk) records its time as the phishing-resistant time, after a first factor or on a
    session; a later TOTP, backup-code or remembered-device step-up moves mfa_time but keeps that time, so a rule
    that wants a fresh security key is not satisfied by a fresh code."""
    revoked: list[Session] = []

    async def revoke(session: Session) -> None:
        revoked.append(session)

    by_key = await session_after_mfa(PROOF, "hwk", now=1000.0, ttl=600.0)
    assert (by_key.mfa_time, by_key.phishing_resistant_time) == (1000.0, 1000.0)
    by_code = await session_after_mfa(PROOF, "otp", now=1000.0, ttl=600.0)
    assert (by_code.mfa_time, by_code.phishing_resistant_time) == (1000.0, None)
    later = by_key
    for method, at in (("otp", 1100.0), ("backup", 1200.0), ("device", 1300.0)):
        later = await session_after_mfa(later, method, now=at, ttl=600.0, revoke=revoke)
        assert (later.mfa_time, later.phishing_resistant_time) == (at, 1000.0), method
    again = await session_after_mfa(later, "hwk", now=1400.0, ttl=600.0, revoke=revoke)
    assert (again.mfa_time, again.phishing_resistant_time) == (1400.0, 1400.0)
    stepped = await session_after_mfa(by_code, "hwk", now=1050.0, ttl=600.0, revoke=revoke)
    assert stepped.methods == ("app", "otp", "hwk") and stepped.phishing_resistant_time == 1050.0
