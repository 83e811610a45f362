"""Contract suite for ``EnrollmentStore``, run against SQLite (a file) and a real PostgreSQL server.

Each PostgreSQL test gets its own freshly created database (``CREATE DATABASE t_<random>`` over an admin
connection, dropped ``WITH (FORCE)`` afterwards); each SQLite test gets its own file in ``tmp_path``. "Two
replicas" are two store instances, each with its own engine and connection pool, on the same database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import asyncpg
import asyncpg.exceptions as asyncpg_errors
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, delete, func, select, text

from mfa_gateway.adapters.sql import store as sql_store
from mfa_gateway.adapters.sql.migrate import HEAD_REVISION, MIGRATIONS_DIR, upgrade
from mfa_gateway.adapters.sql.schema import backup_codes, enrollments, metadata
from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.core.errors import AlreadyEnrolled, DependencyUnavailable, NotEnrolled
from mfa_gateway.core.model import (
    AuditEvent,
    Enrollment,
    EnrollmentStatus,
    NewBackupCode,
    TotpAlgorithm,
    TotpParams,
)
from tests.contracts.conftest import Database
from tests.helpers.servers import PostgresServer, free_port, psql
from tests.helpers.support import eventually

NOW = 1_700_000_000.0
HEAD = "0007"
"""The newest migration: every store migrates to it."""


def pending(user_id: str = "alice", ciphertext: bytes = b"\x01ct-alice", **changes: object) -> Enrollment:
    enrollment = Enrollment(
        user_id=user_id,
        secret_ciphertext=ciphertext,
        key_id="k1",
        params=TotpParams(algorithm=TotpAlgorithm.SHA256, digits=8, period=60),
        status=EnrollmentStatus.PENDING,
        created_at=NOW,
    )
    return replace(enrollment, **changes)  # type: ignore[arg-type]


def codes(tag: str, n: int = 3) -> list[NewBackupCode]:
    return [NewBackupCode(lookup=f"{tag}-l{i}", hash=f"$argon2id$h-{tag}-{i}") for i in range(n)]


async def stored_codes(store: SqlEnrollmentStore, user_id: str) -> set[tuple[str, str]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(backup_codes.c.lookup, backup_codes.c.hash).where(backup_codes.c.user_id == user_id)
        )
        return {(row.lookup, row.hash) for row in rows}


def as_pairs(new_codes: list[NewBackupCode]) -> set[tuple[str, str]]:
    return {(code.lookup, code.hash) for code in new_codes}


async def test_get_enrollment_of_unknown_user_is_none(store: SqlEnrollmentStore) -> None:
    """A user who never enrolled has no enrollment (None, not an error)."""
    assert await store.get_enrollment("nobody") is None


async def test_save_pending_round_trips_every_field(store: SqlEnrollmentStore) -> None:
    """What save_pending stores comes back unchanged: ciphertext, key id, TOTP params, status and times."""
    enrollment = pending()
    await store.save_pending(enrollment, codes("a"))
    assert await store.get_enrollment("alice") == enrollment


async def test_save_pending_replaces_earlier_pending_and_its_codes(store: SqlEnrollmentStore) -> None:
    """A second save_pending for a still-pending user replaces the enrollment and the whole code set."""
    await store.save_pending(pending(ciphertext=b"old"), codes("old"))
    newer = pending(ciphertext=b"new", key_id="k2", created_at=NOW + 10)
    await store.save_pending(newer, codes("new", 2))
    assert await store.get_enrollment("alice") == newer
    assert await stored_codes(store, "alice") == as_pairs(codes("new", 2))


async def test_save_pending_refuses_to_replace_active(store: SqlEnrollmentStore) -> None:
    """An active enrollment is never replaced: AlreadyEnrolled, and enrollment and codes stay as they were."""
    await store.save_pending(pending(ciphertext=b"live"), codes("live"))
    assert await store.activate("alice", NOW + 1)
    before = await store.get_enrollment("alice")
    with pytest.raises(AlreadyEnrolled):
        await store.save_pending(pending(ciphertext=b"attacker"), codes("attacker"))
    assert await store.get_enrollment("alice") == before
    assert await stored_codes(store, "alice") == as_pairs(codes("live"))


async def test_save_pending_rejects_an_active_enrollment_value(store: SqlEnrollmentStore) -> None:
    """save_pending only stores pending enrollments; passing an active one is a programming error."""
    with pytest.raises(ValueError, match="pending"):
        await store.save_pending(pending(status=EnrollmentStatus.ACTIVE), [])
    assert await store.get_enrollment("alice") is None


async def test_activate_only_once(store: SqlEnrollmentStore) -> None:
    """activate turns a pending enrollment active exactly once and records when; unknown users give False."""
    await store.save_pending(pending(), codes("a"))
    assert await store.activate("alice", NOW + 5) is True
    assert await store.activate("alice", NOW + 6) is False
    assert await store.activate("nobody", NOW + 6) is False
    active = await store.get_enrollment("alice")
    assert active == pending(status=EnrollmentStatus.ACTIVE, activated_at=NOW + 5)


async def test_delete_enrollment_removes_it_and_its_codes(store: SqlEnrollmentStore) -> None:
    """delete_enrollment removes the enrollment and every backup code; deleting again reports False."""
    await store.save_pending(pending(), codes("a"))
    await store.save_pending(pending("bob", b"ct-bob"), codes("b"))
    assert await store.delete_enrollment("alice") is True
    assert await store.get_enrollment("alice") is None
    assert await store.count_unused_backup_codes("alice") == 0
    assert await stored_codes(store, "alice") == set()
    assert await store.delete_enrollment("alice") is False
    assert await stored_codes(store, "bob") == as_pairs(codes("b"))


async def test_database_cascades_enrollment_delete_to_codes(store: SqlEnrollmentStore) -> None:
    """The foreign key itself cascades (SQLite connections enable foreign keys): a raw DELETE drops the codes."""
    await store.save_pending(pending(), codes("a"))
    async with store.engine.begin() as conn:
        await conn.execute(delete(enrollments).where(enrollments.c.user_id == "alice"))
    assert await stored_codes(store, "alice") == set()


async def test_unused_backup_codes_filters_by_user_bucket_and_use(store: SqlEnrollmentStore) -> None:
    """unused_backup_codes returns only the user's unused codes in the asked lookup bucket."""
    await store.save_pending(pending(), [NewBackupCode("same", "h1"), NewBackupCode("same", "h2")])
    await store.save_pending(pending("bob", b"ct-bob"), [NewBackupCode("same", "bob-h")])
    found = await store.unused_backup_codes("alice", "same")
    assert [(c.lookup, c.hash) for c in found] == [("same", "h1"), ("same", "h2")]
    assert await store.unused_backup_codes("alice", "other") == []
    assert await store.consume_backup_code(found[0].id, NOW)
    assert [c.hash for c in await store.unused_backup_codes("alice", "same")] == ["h2"]


async def test_consume_backup_code_once(store: SqlEnrollmentStore) -> None:
    """A backup code is consumed once: the first call is True, later calls and unknown ids are False."""
    await store.save_pending(pending(), codes("a"))
    (code,) = await store.unused_backup_codes("alice", "a-l1")
    assert await store.count_unused_backup_codes("alice") == 3
    assert await store.consume_backup_code(code.id, NOW) is True
    assert await store.consume_backup_code(code.id, NOW + 1) is False
    assert await store.consume_backup_code(10**9, NOW) is False
    assert await store.count_unused_backup_codes("alice") == 2
    assert await store.unused_backup_codes("alice", "a-l1") == []


async def test_concurrent_consume_across_two_replicas_succeeds_once(database: Database) -> None:
    """20 concurrent consumes of one code, split over two replicas (two engines), yield exactly one True."""
    first, second = database.store(), database.store()
    await first.migrate()
    await first.save_pending(pending(), codes("a"))
    (code,) = await first.unused_backup_codes("alice", "a-l0")
    results = await asyncio.gather(
        *((first if i % 2 else second).consume_backup_code(code.id, NOW + i) for i in range(20))
    )
    assert results.count(True) == 1
    assert await second.count_unused_backup_codes("alice") == 2


async def test_concurrent_save_pending_leaves_one_consistent_enrollment(database: Database) -> None:
    """Racing save_pending calls for one user leave one enrollment and exactly the winner's codes."""
    first, second = database.store(), database.store()
    await first.migrate()
    contenders = [(pending(ciphertext=f"ct-{i}".encode()), codes(f"c{i}")) for i in range(10)]
    await asyncio.gather(*((first if i % 2 else second).save_pending(e, c) for i, (e, c) in enumerate(contenders)))
    winner = await second.get_enrollment("alice")
    assert winner is not None
    index = int(winner.secret_ciphertext.decode().removeprefix("ct-"))
    assert winner == contenders[index][0]
    assert await stored_codes(first, "alice") == as_pairs(contenders[index][1])
    async with first.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(enrollments)) == 1


async def test_concurrent_save_pending_never_overwrites_active(database: Database) -> None:
    """With an active enrollment, every racing save_pending raises AlreadyEnrolled and nothing changes."""
    first, second = database.store(), database.store()
    await first.migrate()
    await first.save_pending(pending(ciphertext=b"live"), codes("live"))
    assert await first.activate("alice", NOW)
    results = await asyncio.gather(
        *(
            (first if i % 2 else second).save_pending(pending(ciphertext=f"x{i}".encode()), codes(f"x{i}"))
            for i in range(10)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(result, AlreadyEnrolled) for result in results)
    assert await second.get_enrollment("alice") == pending(
        ciphertext=b"live", status=EnrollmentStatus.ACTIVE, activated_at=NOW
    )
    assert await stored_codes(first, "alice") == as_pairs(codes("live"))


async def test_activate_racing_save_pending_keeps_activation(database: Database) -> None:
    """If activate reports success while save_pending calls race it, the enrollment ends active, not pending."""
    first, second = database.store(), database.store()
    await first.migrate()
    await first.save_pending(pending(ciphertext=b"ct-start"), codes("start"))
    savers = [
        (first if i % 2 else second).save_pending(pending(ciphertext=f"ct-{i}".encode()), codes(f"c{i}"))
        for i in range(6)
    ]
    activated, *saves = await asyncio.gather(second.activate("alice", NOW + 1), *savers, return_exceptions=True)
    assert activated is True
    final = await first.get_enrollment("alice")
    assert final is not None
    assert final.status is EnrollmentStatus.ACTIVE
    tag = final.secret_ciphertext.decode().removeprefix("ct-")
    expected = codes("start") if tag == "start" else codes(f"c{tag}")
    assert await stored_codes(first, "alice") == as_pairs(expected)
    assert all(result is None or isinstance(result, AlreadyEnrolled) for result in saves)


async def test_totp_step_claims_only_move_forward(store: SqlEnrollmentStore) -> None:
    """claim_totp_step keeps the newest accepted step per enrollment: a step, or any older one, is claimed once;
    a newer one is claimed; each user has their own; a user without an enrollment claims nothing."""
    await store.save_pending(pending(), [])
    assert await store.claim_totp_step("alice", 1000) is True
    assert await store.claim_totp_step("alice", 1000) is False
    assert await store.claim_totp_step("alice", 999) is False
    assert await store.claim_totp_step("alice", 1001) is True
    assert await store.claim_totp_step("bob", 1000) is False
    await store.save_pending(pending("bob", b"ct-bob"), [])
    assert await store.claim_totp_step("bob", 1000) is True
    assert await store.claim_totp_step("alice", 1001) is False


async def test_totp_step_survives_activation_and_a_new_store(database: Database) -> None:
    """The step is durable: activating keeps it, and another store on the database (a restarted replica) refuses
    it too."""
    first = database.store()
    await first.migrate()
    await first.save_pending(pending(), [])
    assert await first.claim_totp_step("alice", 1000)
    assert await first.activate("alice", NOW)
    await first.close()
    assert await database.store().claim_totp_step("alice", 1000) is False


async def test_a_new_enrollment_starts_with_no_totp_step(store: SqlEnrollmentStore) -> None:
    """A replaced pending enrollment, and one made after disabling, is a new secret: no step of it was used yet."""
    await store.save_pending(pending(ciphertext=b"first"), [])
    assert await store.claim_totp_step("alice", 1000)
    await store.save_pending(pending(ciphertext=b"second"), [])
    assert await store.claim_totp_step("alice", 1000) is True
    assert await store.activate("alice", NOW)
    assert await store.delete_enrollment("alice")
    await store.save_pending(pending(ciphertext=b"third"), [])
    assert await store.claim_totp_step("alice", 1000) is True


async def test_concurrent_totp_step_claims_across_two_replicas_have_one_winner(database: Database) -> None:
    """20 concurrent claims of one step, split over two replicas (two engines), yield exactly one True: two replicas
    racing with one code cannot both win, even when shared state lost its mark."""
    first, second = database.store(), database.store()
    await first.migrate()
    await first.save_pending(pending(), [])
    results = await asyncio.gather(*((first if i % 2 else second).claim_totp_step("alice", 1000) for i in range(20)))
    assert results.count(True) == 1
    assert await second.claim_totp_step("alice", 1000) is False


async def test_replace_backup_codes_invalidates_old_codes(store: SqlEnrollmentStore) -> None:
    """replace_backup_codes swaps the whole set: old codes are gone, even used ones, and only new ones count."""
    await store.save_pending(pending(), codes("old"))
    old = [(await store.unused_backup_codes("alice", f"old-l{i}"))[0] for i in range(3)]
    assert await store.consume_backup_code(old[0].id, NOW)
    await store.replace_backup_codes("alice", codes("new", 5))
    assert await store.unused_backup_codes("alice", "old-l1") == []
    assert await store.count_unused_backup_codes("alice") == 5
    assert await stored_codes(store, "alice") == as_pairs(codes("new", 5))


async def test_code_ids_are_never_reused(store: SqlEnrollmentStore) -> None:
    """An id read before replace_backup_codes never names a new code: consuming it afterwards is False."""
    await store.save_pending(pending(), codes("old"))
    old = [(await store.unused_backup_codes("alice", f"old-l{i}"))[0] for i in range(3)]
    await store.replace_backup_codes("alice", codes("new", 5))
    new = [(await store.unused_backup_codes("alice", f"new-l{i}"))[0] for i in range(5)]
    assert min(code.id for code in new) > max(code.id for code in old)
    for code in old:
        assert await store.consume_backup_code(code.id, NOW) is False
    assert await store.count_unused_backup_codes("alice") == 5


async def test_replace_backup_codes_needs_an_enrollment(store: SqlEnrollmentStore) -> None:
    """Codes belong to an enrollment: replacing them for a user without one raises NotEnrolled."""
    with pytest.raises(NotEnrolled):
        await store.replace_backup_codes("nobody", codes("x"))


async def test_update_secret_is_compare_and_set(store: SqlEnrollmentStore) -> None:
    """update_secret writes only if the stored ciphertext is still the expected one."""
    await store.save_pending(pending(ciphertext=b"v1"), [])
    assert await store.update_secret("alice", b"v1", b"v2", "k2") is True
    assert await store.update_secret("alice", b"v1", b"v3", "k3") is False
    assert await store.update_secret("nobody", b"v1", b"v3", "k3") is False
    stored = await store.get_enrollment("alice")
    assert stored is not None
    assert (stored.secret_ciphertext, stored.key_id) == (b"v2", "k2")


async def test_list_enrollments_keyset_pagination(store: SqlEnrollmentStore) -> None:
    """list_enrollments pages through all users in user-id order, each page starting after the last id."""
    users = [f"user-{i:02d}" for i in range(7)]
    for user in reversed(users):
        await store.save_pending(pending(user, user.encode()), [])
    pages: list[list[str]] = []
    after: str | None = None
    while page := await store.list_enrollments(after, 3):
        pages.append([e.user_id for e in page])
        after = page[-1].user_id
    assert pages == [users[0:3], users[3:6], users[6:7]]
    assert await store.list_enrollments(None, 0) == []


async def test_audit_round_trip_newest_first(store: SqlEnrollmentStore) -> None:
    """Audit events come back intact (detail as a mapping), only the user's, newest first, up to the limit."""
    events = [
        AuditEvent(
            at=NOW + i,
            event="login",
            result="ok" if i % 2 else "fail",
            user_id="alice",
            client_ip="192.0.2.7",
            detail={"method": "totp", "n": str(i), "note": "ü"},
        )
        for i in range(4)
    ]
    for event in events:
        await store.record_audit([event])
    await store.record_audit(
        [
            AuditEvent(at=NOW + 9, event="login", result="ok", user_id="bob"),
            AuditEvent(at=NOW + 9, event="startup", result="ok"),
        ]
    )
    assert await store.recent_audit("alice", 3) == events[:0:-1]
    assert await store.recent_audit("bob", 10) == [AuditEvent(at=NOW + 9, event="login", result="ok", user_id="bob")]


async def test_stores_exactly_the_ciphertext_and_hashes_given(store: SqlEnrollmentStore) -> None:
    """The store keeps the secret as the exact ciphertext bytes and codes as the exact lookup/hash given."""
    ciphertext = bytes(range(256))
    await store.save_pending(pending(ciphertext=ciphertext), codes("a"))
    async with store.engine.connect() as conn:
        raw = (await conn.execute(select(enrollments.c.secret_ciphertext))).scalar_one()
    assert bytes(raw) == ciphertext
    assert await stored_codes(store, "alice") == as_pairs(codes("a"))


async def test_ping_succeeds_on_a_live_database(store: SqlEnrollmentStore) -> None:
    """ping returns quietly when the database answers."""
    await store.ping()


async def test_migrate_twice_is_idempotent(store: SqlEnrollmentStore) -> None:
    """Running migrate again (as every restart does) changes nothing and keeps the data."""
    await store.save_pending(pending(), codes("a"))
    await store.migrate()
    assert await store.get_enrollment("alice") == pending()
    async with store.engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == HEAD


def test_the_shipped_head_revision_is_the_newest_migration() -> None:
    """``HEAD_REVISION``, which lets a started gateway skip alembic when its database is current, names the newest
    migration under ``migrations/versions`` (a new migration must move it, or every start would run alembic for
    nothing, and a database one revision behind would never be upgraded)."""
    assert HEAD_REVISION == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == HEAD


async def test_a_0001_database_upgrades_to_head_with_its_data(database: Database) -> None:
    """A database as release 0.1.0 left it (migration 0001, with an active enrollment and backup codes) migrates to
    the newest revision: the rows are unchanged, and the enrollment starts with no TOTP step, so its next code
    claims one."""
    store = database.store()
    async with store.engine.begin() as conn:
        await conn.run_sync(upgrade, "0001")
        await conn.execute(
            text(
                "INSERT INTO enrollments (user_id, secret_ciphertext, key_id, algorithm, digits, period, status,"
                " created_at, activated_at, updated_at)"
                " VALUES ('alice', :ct, 'k1', 'SHA256', 8, 60, 'active', :now, :now, :now)"
            ),
            {"ct": b"\x01ct-alice", "now": NOW},
        )
        await conn.execute(
            text("INSERT INTO backup_codes (user_id, lookup, hash) VALUES ('alice', 'a-l0', '$argon2id$h-a-0')")
        )
    await store.migrate()
    async with store.engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == HEAD
    assert await store.get_enrollment("alice") == pending(status=EnrollmentStatus.ACTIVE, activated_at=NOW)
    assert await stored_codes(store, "alice") == as_pairs(codes("a", 1))
    assert await store.claim_totp_step("alice", 1000) is True
    assert await store.claim_totp_step("alice", 1000) is False


async def test_pending_enrollments_no_code_can_complete_are_removed_on_upgrade(database: Database) -> None:
    """A pending enrollment that 0.1.0 saved with a period codes cannot be checked with (over 120 s) is removed,
    with its backup codes, so its user can enroll afresh; other enrollments and their codes stay."""
    store = database.store()
    insert_enrollment = text(
        "INSERT INTO enrollments (user_id, secret_ciphertext, key_id, algorithm, digits, period, status,"
        " created_at, activated_at, updated_at)"
        " VALUES (:user, :ct, 'k1', 'SHA1', 6, :period, :status, :now, NULL, :now)"
    )
    async with store.engine.begin() as conn:
        await conn.run_sync(upgrade, "0002")
        for user, period, status in (("stuck", 300, "pending"), ("fine", 120, "pending"), ("bob", 30, "active")):
            await conn.execute(
                insert_enrollment, {"user": user, "ct": b"\x01ct", "period": period, "status": status, "now": NOW}
            )
            await conn.execute(
                text("INSERT INTO backup_codes (user_id, lookup, hash) VALUES (:user, 'l0', '$argon2id$h')"),
                {"user": user},
            )
    await store.migrate()
    assert await store.get_enrollment("stuck") is None
    assert await stored_codes(store, "stuck") == set()
    fine, bob = await store.get_enrollment("fine"), await store.get_enrollment("bob")
    assert fine is not None and fine.params.period == 120
    assert bob is not None and bob.status is EnrollmentStatus.ACTIVE
    assert await stored_codes(store, "fine") and await stored_codes(store, "bob")


async def test_concurrent_migrations_of_a_fresh_database(database: Database) -> None:
    """Several replicas migrating an empty database at once all succeed and leave one schema version."""
    replicas = [database.store() for _ in range(4)]
    await asyncio.gather(*(replica.migrate() for replica in replicas))
    async with replicas[0].engine.connect() as conn:
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).all() == [(HEAD,)]


async def test_migrated_schema_matches_schema_metadata(store: SqlEnrollmentStore) -> None:
    """The hand-written migrations produce exactly schema.metadata: autogenerate finds no difference."""

    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_ping_unreachable_postgres_hides_password() -> None:
    """ping against a closed port raises DependencyUnavailable whose messages never contain the password."""
    password = "s3cret-Pa55word"
    url = f"postgresql+asyncpg://mfa:{password}@127.0.0.1:{free_port()}/mfa"
    for store in (SqlEnrollmentStore(url), SqlEnrollmentStore(url.replace(f":{password}", ""), password=password)):
        try:
            assert store.engine.url.password == password
            with pytest.raises(DependencyUnavailable) as caught:
                await store.ping()
            assert caught.value.dependency == "database"
            chain: BaseException | None = caught.value
            while chain is not None:
                assert password not in str(chain) and password not in repr(chain)
                chain = chain.__cause__ or chain.__context__
        finally:
            await store.close()


async def test_operations_on_unreachable_postgres_raise_dependency_unavailable() -> None:
    """Any store call, not only ping, reports an unreachable database as DependencyUnavailable."""
    store = SqlEnrollmentStore(f"postgresql+asyncpg://mfa@127.0.0.1:{free_port()}/mfa")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_enrollment("alice"),
        lambda: store.consume_backup_code(1, NOW),
        lambda: store.save_pending(pending(), codes("a")),
        store.migrate,
    ]
    try:
        for call in calls:
            with pytest.raises(DependencyUnavailable):
                await call()
    finally:
        await store.close()


def test_asyncpg_errors_of_the_prepared_statements_read_as_the_drivers_wrapped_ones_do() -> None:
    """The sign-in's statements run on asyncpg directly (no SQLAlchemy wrapper around its errors): a server starting
    up or out of connections is the database unavailable (503); a constraint is not, nor is a client-side error
    without a server code (a bug; a connection lost is told by the store, which sees the connection closed)."""
    assert sql_store._is_unavailable(asyncpg_errors.ConnectionDoesNotExistError("connection was closed"))
    assert sql_store._is_unavailable(asyncpg_errors.CannotConnectNowError("the database system is starting up"))
    assert sql_store._is_unavailable(asyncpg_errors.TooManyConnectionsError("too many clients"))
    assert not sql_store._is_unavailable(asyncpg_errors.UniqueViolationError("duplicate key"))
    assert not sql_store._is_unavailable(asyncpg_errors.InterfaceError("the server expects 2 arguments"))
    assert not sql_store._is_unavailable(ValueError("not the database's"))


def test_prepared_statements_pass_a_repeated_parameter_once_in_postgresql_order() -> None:
    """The step claim names ``step`` twice; asyncpg gets it as one numbered parameter, in the compiled order."""
    claim = sql_store._CLAIM_STEP
    assert claim.positions == ("step", "user") and claim.postgresql.count("$1") == 2
    assert claim.arguments({"user": "alice", "step": 7}) == [7, "alice"]


@pytest.mark.postgres
async def test_a_write_cancelled_inside_its_transaction_leaves_no_transaction_open(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a step claim cancelled once its BEGIN reached the server (a client gone, a timeout) does not hand
    its connection out again inside that transaction: the next claim is committed (another replica refuses the same
    step at once) and no session stays idle in a transaction."""
    store = SqlEnrollmentStore(postgres_url, pool_size=1)
    other = SqlEnrollmentStore(postgres_url)
    try:
        await store.migrate()
        await store.save_pending(pending(), [])
        assert await store.claim_totp_step("alice", 1)  # the one pooled connection in use
        execute, begins = asyncpg.Connection.execute, []

        async def cancelled_after_begin(self: asyncpg.Connection, query: str, *args: object, **kwargs: object) -> str:
            status = await execute(self, query, *args, **kwargs)  # type: ignore[arg-type]
            if query.startswith("BEGIN"):
                begins.append(query)
                if len(begins) == 2:  # the first is the pool's liveness check at checkout, the second the claim's
                    raise asyncio.CancelledError
            return status

        monkeypatch.setattr(asyncpg.Connection, "execute", cancelled_after_begin)
        with pytest.raises(asyncio.CancelledError):
            await store.claim_totp_step("alice", 2)
        assert await store.claim_totp_step("alice", 3)
        assert await asyncio.wait_for(other.claim_totp_step("alice", 3), 5) is False
        idle = "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        assert psql(postgres_server, idle).strip() == "0"
    finally:
        await store.close()
        await other.close()


@pytest.mark.postgres
async def test_a_connection_lost_during_a_sign_in_read_is_unavailable_then_replaced(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the server ends the connection a sign-in read runs on (a restart, an administrator): that read
    is refused as unavailable (503), and the next one gets a new connection and succeeds."""
    store = SqlEnrollmentStore(postgres_url, pool_size=1)
    try:
        await store.migrate()
        await store.save_pending(pending(), [])
        fetch, armed = asyncpg.Connection.fetch, [True]

        async def ended_first(self: asyncpg.Connection, query: str, *args: object, **kwargs: object) -> object:
            if armed:
                armed.clear()
                psql(postgres_server, f"SELECT pg_terminate_backend({self.get_server_pid()})")
            return await fetch(self, query, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(asyncpg.Connection, "fetch", ended_first)
        with pytest.raises(DependencyUnavailable):
            await store.get_enrollment("alice")
        enrollment = await store.get_enrollment("alice")
        assert enrollment is not None and enrollment.user_id == "alice"
    finally:
        await store.close()


async def test_unopenable_sqlite_file_raises_dependency_unavailable(tmp_path: Path) -> None:
    """A SQLite path that cannot be opened (here: a directory) makes ping and every read (which run on another
    connection, in a worker thread) raise DependencyUnavailable."""
    store = SqlEnrollmentStore(f"sqlite+aiosqlite:///{tmp_path}")
    try:
        with pytest.raises(DependencyUnavailable):
            await store.ping()
        for read in (
            store.get_enrollment("alice"),
            store.list_enrollments(None, 10),
            store.unused_backup_codes("alice", "abc"),
            store.count_unused_backup_codes("alice"),
            store.recent_audit("alice", 5),
        ):
            with pytest.raises(DependencyUnavailable):
                await read
    finally:
        await store.close()
        await aiosqlite_workers_stopped()


async def test_a_damaged_sqlite_file_is_unavailable_not_an_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database (damaged, or the wrong path) makes ping and reads raise
    DependencyUnavailable (a 503 and a log line), not a driver error (a 500)."""
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database " * 100)
    store = SqlEnrollmentStore(f"sqlite+aiosqlite:///{path}")
    try:
        with pytest.raises(DependencyUnavailable):
            await store.ping()
        with pytest.raises(DependencyUnavailable):
            await store.get_enrollment("alice")
    finally:
        await store.close()
        await aiosqlite_workers_stopped()


async def test_sqlite_reads_do_not_queue_behind_the_loops_default_threads(tmp_path: Path) -> None:
    """Reads run on threads of their own: with every thread of the loop's default pool busy (slow Vault Transit
    calls, say), a read still answers at once."""
    store = SqlEnrollmentStore(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    await store.migrate()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    try:
        assert await asyncio.wait_for(store.get_enrollment("alice"), 10) is None
    finally:
        release.set()
        await asyncio.gather(*busy)
        await store.close()


async def aiosqlite_workers_stopped() -> None:
    """Wait for aiosqlite's worker threads to finish.

    After a failed connect, aiosqlite stops its worker thread asynchronously and the thread then reports back to the
    event loop; if pytest closed the loop first, the thread raises "Event loop is closed" into the next test.
    """
    await eventually(
        lambda: not any(t.name.endswith("(_connection_worker_thread)") for t in threading.enumerate()),
        "aiosqlite's worker threads to stop",
        within=5,
        interval=0.01,
    )


async def test_relative_sqlite_path_creates_parent_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative SQLite path whose directory does not exist yet works: the directory is created."""
    monkeypatch.chdir(tmp_path)
    store = SqlEnrollmentStore("sqlite+aiosqlite:///data/nested/mfa.db")
    try:
        await store.migrate()
        await store.save_pending(pending(), [])
        assert (tmp_path / "data" / "nested" / "mfa.db").is_file()
    finally:
        await store.close()


async def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    """SQLite files run in WAL mode (readers do not block the writer) and every connection enforces foreign keys."""
    store = SqlEnrollmentStore(f"sqlite+aiosqlite:///{tmp_path / 'mfa.db'}")
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await store.close()
