"""Contract suite for ``SessionRecordStore`` (the account page's list of sessions), on SQLite and PostgreSQL.

The rules that carry security: a record comes back as it was kept, and only to its user; a revoked or expired
record is never listed again, on any replica; revoking by public id reaches only the caller's records and hands
back the sid to revoke; "everywhere else" keeps exactly the caller's session; a record is revoked once, even by two
replicas at once; ended records are purged.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import text

from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.core.session_records import SessionRecord
from tests.contracts.conftest import Database, store_at_revision

NOW = 1_700_000_000.0
HOUR = 3600.0


def record(user_id: str = "alice", tag: str = "1", **changes: object) -> SessionRecord:
    made = SessionRecord(
        id=f"id-{user_id}-{tag}",
        sid=f"sid-{user_id}-{tag}",
        user_id=user_id,
        methods=("pwd", "otp"),
        label="Firefox on Linux",
        created_at=NOW,
        expires_at=NOW + 8 * HOUR,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


async def test_records_round_trip_and_are_listed_only_to_their_user(store: SqlEnrollmentStore) -> None:
    """What add_session_record keeps comes back unchanged (methods in order), the user's active records oldest
    first, none of another user's."""
    first, second = record(tag="a"), record(tag="b", created_at=NOW + 1, methods=("app", "hwk"))
    for kept in (second, record("bob"), first):
        await store.add_session_record(kept, now=NOW + 2)
    assert await store.session_records_of("alice", NOW + 2) == [first, second]
    assert await store.session_records_of("nobody", NOW + 2) == []


async def test_expired_and_ended_records_are_not_listed_and_are_purged(store: SqlEnrollmentStore) -> None:
    """A record past its expiry or ended by its sid (signed out, replaced at a step-up) is not listed; the next
    record kept deletes every expired row, anyone's, revoked or not (a revoked one waits for its expiry: the purge
    reads the expiry index alone); ending an unknown or ended sid is False."""
    await store.add_session_record(record(tag="old", expires_at=NOW + 10), now=NOW)
    await store.add_session_record(record("bob"), now=NOW)
    assert await store.end_session_record("sid-bob-1", NOW + 1) is True
    assert await store.end_session_record("sid-bob-1", NOW + 2) is False
    assert await store.end_session_record("no-such-sid", NOW + 2) is False
    assert await store.session_records_of("alice", NOW + 10) == []
    assert await store.session_records_of("bob", NOW + 2) == []
    await store.add_session_record(record(tag="new"), now=NOW + 20)
    async with store.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT id FROM session_records ORDER BY id"))).all()
    assert kept == [("id-alice-new",), ("id-bob-1",)]  # bob's revoked record lives until NOW + 8 h, unlisted
    await store.add_session_record(record(tag="later", expires_at=NOW + 9 * HOUR), now=NOW + 8 * HOUR)
    async with store.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT id FROM session_records ORDER BY id"))).all()
    assert kept == [("id-alice-later",)]
    assert await store.session_records_of("bob", NOW + 20) == []


async def test_revoking_by_public_id_needs_the_owner_and_returns_the_sid(store: SqlEnrollmentStore) -> None:
    """Bob's record id under alice revokes nothing (None) and his stays listed; alice's own comes back with its
    sid, once; a second revocation finds nothing."""
    await store.add_session_record(record(), now=NOW)
    await store.add_session_record(record("bob"), now=NOW)
    assert await store.revoke_session_record("alice", "id-bob-1", NOW + 1) is None
    assert await store.session_records_of("bob", NOW + 1) == [record("bob")]
    revoked = await store.revoke_session_record("alice", "id-alice-1", NOW + 1)
    assert revoked == record(revoked_at=NOW + 1)
    assert revoked is not None and revoked.sid == "sid-alice-1"
    assert await store.revoke_session_record("alice", "id-alice-1", NOW + 2) is None
    assert await store.session_records_of("alice", NOW + 2) == []


async def test_everywhere_else_keeps_only_the_callers_session(store: SqlEnrollmentStore) -> None:
    """revoke_session_records with keep_sid revokes the user's other active records (returned, oldest first) and
    keeps the one of keep_sid and every other user's; without keep_sid it revokes all."""
    for kept in (record(tag="a"), record(tag="b", created_at=NOW + 1), record(tag="me"), record("bob")):
        await store.add_session_record(kept, now=NOW)
    others = await store.revoke_session_records("alice", NOW + 5, keep_sid="sid-alice-me")
    assert [other.sid for other in others] == ["sid-alice-a", "sid-alice-b"]
    assert await store.session_records_of("alice", NOW + 5) == [record(tag="me")]
    assert await store.session_records_of("bob", NOW + 5) == [record("bob")]
    assert [r.sid for r in await store.revoke_session_records("alice", NOW + 6, keep_sid=None)] == ["sid-alice-me"]


async def test_two_replicas_revoking_at_once_each_record_is_returned_once(database: Database) -> None:
    """Records live in the database: a revocation through one replica is seen by the other, and two replicas
    revoking the same user's records at once hand each sid back exactly once."""
    one, two = database.store(), database.store()
    await one.migrate()
    for tag in "abcdef":
        await one.add_session_record(record(tag=tag), now=NOW)
    first, second = await asyncio.gather(
        one.revoke_session_records("alice", NOW + 1, keep_sid=None),
        two.revoke_session_records("alice", NOW + 1, keep_sid=None),
    )
    assert sorted(r.sid for r in (*first, *second)) == [f"sid-alice-{tag}" for tag in "abcdef"]
    assert await two.session_records_of("alice", NOW + 1) == []


async def test_a_0005_database_upgrades_with_an_empty_session_table(database: Database) -> None:
    """A database as the previous release left it (revision 0005) migrates to the head: its enrollments stay, and
    the session-record table starts empty and usable."""
    store = await store_at_revision(database, "0005", NOW)
    await store.migrate()
    assert (await store.get_enrollment("alice")) is not None
    assert await store.session_records_of("alice", NOW) == []
    await store.add_session_record(record(), now=NOW)
    assert await store.session_records_of("alice", NOW) == [record()]
