"""Remembered devices, the use cases, on a real SQLite store with injected time: trust, stand in, revoke, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.core import devices
from mfa_gateway.core.methods import DEVICE
from mfa_gateway.core.session import Session
from mfa_gateway.runtime import Runtime, longest_session
from mfa_gateway.service.account import end_everywhere, reset_everywhere
from mfa_gateway.service.mfa import Caller
from mfa_gateway.service.sessions import FirstFactorProof, session_after_mfa
from tests.helpers.gateway import FakeClock, make_runtime, make_settings

ALICE = Caller("alice", "192.0.2.10")
BOB = Caller("bob", "192.0.2.11")
DAY = 86400.0


@dataclass
class Setup:
    runtime: Runtime
    audit: MemoryAudit
    clock: FakeClock


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FakeClock()
    runtime, audit = make_runtime(make_settings(tmp_path), clock)
    await runtime.store.migrate()
    yield Setup(runtime, audit, clock)
    await runtime.close()


def events(audit: MemoryAudit, name: str) -> list[tuple[str, str | None, dict[str, str]]]:
    return [(e.result, e.user_id, dict(e.detail)) for e in audit.events if e.event == name]


async def test_a_trusted_device_stands_in_within_its_age_and_is_audited_without_its_token(setup: Setup) -> None:
    """Trusted after MFA, the device stands in for the same user and first factor within the rule's age: the
    stand-in records when, and when the grant was made and ends; the events name the grant, never the token or
    its hash, and the verification metric counts it as method ``device``."""
    trusted = await setup.runtime.devices.trust(ALICE, factor="pwd", age=30 * DAY, label="Firefox on Linux")
    setup.clock.advance(DAY)
    stood_in = await setup.runtime.devices.recognise(ALICE, trusted.token, factor="pwd", max_age=30 * DAY)
    assert stood_in is not None
    assert (stood_in.at, stood_in.trusted_at, stood_in.expires_at) == (
        setup.clock.now,
        trusted.grant.created_at,
        trusted.grant.created_at + 30 * DAY,
    )
    assert events(setup.audit, "device.trusted") == [("success", "alice", {"grant": trusted.grant.id, "factor": "pwd"})]
    assert events(setup.audit, "device.used") == [("success", "alice", {"method": "device", "grant": trusted.grant.id})]
    told = repr(setup.audit.events)
    assert trusted.token not in told and trusted.grant.token_hash not in told
    assert setup.runtime.metrics.verifications.labels("device", "success")._value.get() == 1


@pytest.mark.parametrize(
    ("caller", "factor", "advance", "max_age", "reason"),
    [
        (ALICE, "pwd", 30 * DAY, 90 * DAY, "expired"),  # the grant's own age, whatever the rule accepts
        (ALICE, "pwd", 2 * DAY, DAY, "too_old"),  # older than this rule accepts
        (BOB, "pwd", 60.0, 30 * DAY, "other_user"),  # alice's cookie beside bob's first factor
        (ALICE, "hdr", 60.0, 30 * DAY, "other_factor"),
    ],
)
async def test_a_device_never_stands_in_after_its_age_or_for_another_user_or_first_factor(
    setup: Setup, caller: Caller, factor: str, advance: float, max_age: float, reason: str
) -> None:
    """After its age (the clock moved, not slept through), for another user, or after another first factor: no
    stand-in, a ``device.used`` failure with the reason, counted as a failed ``device`` verification."""
    trusted = await setup.runtime.devices.trust(ALICE, factor="pwd", age=30 * DAY, label="A browser")
    setup.clock.advance(advance)
    assert await setup.runtime.devices.recognise(caller, trusted.token, factor=factor, max_age=max_age) is None
    [(result, user, detail)] = events(setup.audit, "device.used")
    assert (result, user, detail["reason"]) == ("failure", caller.user_id, reason)
    assert ("grant" in detail) is (reason != "other_user")  # alice's grant id is not told in bob's events
    assert setup.runtime.metrics.verifications.labels("device", "failure")._value.get() == 1


async def test_a_revoked_device_or_an_unreadable_token_never_stands_in(setup: Setup) -> None:
    """Revoked by id, the device is refused; a cookie that is no token at all is refused without a look-up."""
    trusted = await setup.runtime.devices.trust(ALICE, factor="app", age=DAY, label="A browser")
    assert await setup.runtime.devices.revoke(BOB, trusted.grant.id) is False  # not bob's to revoke
    assert await setup.runtime.devices.revoke(ALICE, trusted.grant.id) is True
    assert await setup.runtime.devices.recognise(ALICE, trusted.token, factor="app", max_age=DAY) is None
    assert await setup.runtime.devices.recognise(ALICE, "not a token", factor="app", max_age=DAY) is None
    reasons = [detail["reason"] for _, _, detail in events(setup.audit, "device.used")]
    assert reasons == ["revoked", "unknown"]
    assert events(setup.audit, "device.revoked") == [("success", "alice", {"grant": trusted.grant.id})]


async def test_a_grant_lives_no_longer_than_the_longest_any_rule_may_remember(setup: Setup) -> None:
    """Whatever age is asked for, a grant ends within ``MAX_AGE`` (90 days)."""
    trusted = await setup.runtime.devices.trust(ALICE, factor="pwd", age=365 * DAY, label="A browser")
    assert trusted.grant.expires_at == trusted.grant.created_at + devices.MAX_AGE


async def test_signing_out_everywhere_and_a_reset_forget_every_device(setup: Setup) -> None:
    """``end_everywhere`` (sign-out everywhere, disable) and ``reset_everywhere`` revoke every grant of the user,
    audited once with the count, and leave other users' grants alone."""
    runtime = setup.runtime
    first = await runtime.devices.trust(ALICE, factor="pwd", age=DAY, label="A browser")
    second = await runtime.devices.trust(ALICE, factor="pwd", age=DAY, label="A browser")
    bobs = await runtime.devices.trust(BOB, factor="pwd", age=DAY, label="A browser")
    await end_everywhere(
        runtime.revocations, runtime.devices, ALICE, longest_session=longest_session(runtime.settings), via="logout"
    )
    for token in (first.token, second.token):
        assert await runtime.devices.recognise(ALICE, token, factor="pwd", max_age=DAY) is None
    assert events(setup.audit, "device.revoked") == [
        ("success", "alice", {"scope": "all", "count": "2", "via": "logout"})
    ]
    assert await runtime.devices.grants("bob") == [bobs.grant]
    await reset_everywhere(runtime.mfa, runtime.revocations, runtime.devices, "bob", longest_session=60.0, via="cli")
    assert await runtime.devices.grants("bob") == []


async def test_the_session_a_device_steps_up_records_the_stand_in_not_an_mfa(setup: Setup) -> None:
    """``session_after_mfa`` with a device: a new id, ``device`` among the methods, the stand-in kept, MFA time
    unchanged (None after a first factor alone); a session it replaces is revoked, as for any step-up."""
    trusted = await setup.runtime.devices.trust(ALICE, factor="hdr", age=DAY, label="A browser")
    stood_in = await setup.runtime.devices.recognise(ALICE, trusted.token, factor="hdr", max_age=DAY)
    assert stood_in is not None
    proof = FirstFactorProof("alice", ("hdr",), auth_time=setup.clock.now, binding="b1nd")
    fresh = await session_after_mfa(proof, stood_in, now=setup.clock.now, ttl=3600.0)
    assert (fresh.methods, fresh.mfa_time, fresh.device, fresh.binding) == (("hdr", DEVICE), None, stood_in, "b1nd")
    revoked: list[Session] = []

    async def revoke(session: Session) -> None:
        revoked.append(session)

    before = Session.start("alice", ("pwd",), now=setup.clock.now, ttl=3600.0, auth_time=setup.clock.now)
    after = await session_after_mfa(before, stood_in, now=setup.clock.now, ttl=3600.0, revoke=revoke)
    assert revoked == [before] and after.sid != before.sid
    assert (after.methods, after.mfa_time, after.device) == (("pwd", DEVICE), None, stood_in)


async def test_trusting_a_browser_again_replaces_its_grant_and_only_the_callers(setup: Setup) -> None:
    """A browser that ticks the box again holds one grant: the one its old token named is revoked; a token of
    another user's grant, presented as the old one, is left alone."""
    devices_ = setup.runtime.devices
    first = await devices_.trust(ALICE, factor="pwd", age=DAY, label="A browser")
    bobs = await devices_.trust(BOB, factor="pwd", age=DAY, label="A browser")
    second = await devices_.trust(ALICE, factor="pwd", age=DAY, label="A browser", replacing=first.token)
    assert await devices_.grants("alice") == [second.grant]
    await devices_.trust(ALICE, factor="pwd", age=DAY, label="A browser", replacing=bobs.token)
    assert await devices_.grants("bob") == [bobs.grant]
