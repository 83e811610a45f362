"""The account page's sessions, the use cases, on a real SQLite store with injected time: record at issuance, list
the live ones, end one by its public id, end every other one; each on the shared revocation view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.core.session import Session
from mfa_gateway.runtime import Runtime
from mfa_gateway.service.mfa import Caller
from tests.helpers.gateway import FakeClock, make_runtime, make_settings

ALICE = Caller("alice", "192.0.2.10")
BOB = Caller("bob", "192.0.2.11")


@dataclass
class Setup:
    runtime: Runtime
    audit: MemoryAudit
    clock: FakeClock

    async def issue(self, user_id: str = "alice", label: str = "Firefox on Linux") -> Session:
        session = Session.start(
            user_id, ("pwd", "otp"), now=self.clock.now, ttl=3600.0, auth_time=self.clock.now, mfa_time=self.clock.now
        )
        await self.runtime.sessions.issued(session, label)
        return session

    def works(self, session: Session) -> bool:
        return not self.runtime.revocations.is_revoked(session.sid, session.user_id, session.issued_at)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FakeClock()
    runtime, audit = make_runtime(make_settings(tmp_path), clock)
    await runtime.store.migrate()
    yield Setup(runtime, audit, clock)
    await runtime.close()


async def test_issued_sessions_are_listed_until_they_end_anywhere(setup: Setup) -> None:
    """A recorded session is listed (label, methods, issuance time) to its user only; once its sid is revoked (a
    sign-out, a step-up replacing it) or it expires, it is no longer listed, without a write to its record."""
    first = await setup.issue(label="Firefox on Linux")
    setup.clock.advance(10)
    second = await setup.issue(label="Safari on iPhone")
    await setup.issue("bob")
    listed = await setup.runtime.sessions.live("alice")
    assert [(r.sid, r.label, r.methods, r.created_at) for r in listed] == [
        (first.sid, "Firefox on Linux", ("pwd", "otp"), first.issued_at),
        (second.sid, "Safari on iPhone", ("pwd", "otp"), second.issued_at),
    ]
    await setup.runtime.revocations.revoke_session(first)
    assert [r.sid for r in await setup.runtime.sessions.live("alice")] == [second.sid]
    setup.clock.advance(3600)
    assert await setup.runtime.sessions.live("alice") == []


async def test_ending_one_session_needs_its_owner_and_revokes_its_sid(setup: Setup) -> None:
    """By its public id, alice ends her session (its sid revoked, audited by the record id, never the sid); bob
    cannot end it, and the id twice is False."""
    session = await setup.issue()
    [record] = await setup.runtime.sessions.live("alice")
    assert record.id != session.sid
    assert await setup.runtime.sessions.end(BOB, record.id) is False
    assert setup.works(session)
    assert await setup.runtime.sessions.end(ALICE, record.id) is True
    assert not setup.works(session)
    assert await setup.runtime.sessions.end(ALICE, record.id) is False
    [event] = [e for e in setup.audit.events if e.event == "session.revoked"]
    assert dict(event.detail) == {"record": record.id} and session.sid not in repr(setup.audit.events)


async def test_everywhere_else_ends_every_other_session_and_reissues_the_current(setup: Setup) -> None:
    """end_others: every other session of alice ends, recorded or not (a session issued before records existed),
    within the same clock tick too; the current one comes back under a new sid issued after the cut, works, and is
    the only one listed; bob's session is untouched."""
    other = await setup.issue(label="Safari on iPhone")
    unrecorded = Session.start("alice", ("pwd",), now=setup.clock.now, ttl=3600.0, auth_time=setup.clock.now)
    current = await setup.issue()
    bobs = await setup.issue("bob")
    successor = await setup.runtime.sessions.end_others(ALICE, current)
    await setup.runtime.sessions.issued(successor, "Firefox on Linux")  # as the web layer's set_session does
    assert not setup.works(other) and not setup.works(unrecorded) and not setup.works(current)
    assert setup.works(successor) and successor.sid != current.sid and setup.works(bobs)
    assert successor.issued_at > current.issued_at and successor.expires_at == current.expires_at
    assert [(r.sid, r.label) for r in await setup.runtime.sessions.live("alice")] == [
        (successor.sid, "Firefox on Linux")
    ]
