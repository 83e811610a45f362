"""Service-level behaviour that is not visible in one HTTP exchange: hashing cost, lazy re-encryption, audit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, event, select

from mfa_gateway.adapters.audit import StoreAudit
from mfa_gateway.adapters.sql import store as sql_store
from mfa_gateway.adapters.sql.prepared import Prepared
from mfa_gateway.adapters.sql.sqlite_lane import SqliteLane
from mfa_gateway.core import backup_codes
from mfa_gateway.core.errors import DependencyUnavailable, InvalidCode
from mfa_gateway.core.keyring import new_keyring_document
from mfa_gateway.core.model import AuditEvent
from mfa_gateway.core.session_records import SessionRecord
from mfa_gateway.runtime import Runtime, build_runtime
from mfa_gateway.runtime.hashing import HASHING_NICE, HashingPool
from mfa_gateway.service.mfa import Caller
from tests.helpers.gateway import FakeClock, add_user, current_code, make_runtime, make_settings

ALICE = Caller("alice", "192.0.2.10")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime, _ = make_runtime(make_settings(tmp_path), FakeClock())
    await runtime.store.migrate()
    yield runtime
    await runtime.close()


async def _activate(runtime: Runtime) -> tuple[str, list[str]]:
    start = await runtime.mfa.start_enrollment(ALICE)
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    await runtime.mfa.activate(ALICE, current_code(start.secret, clock))
    clock.advance(30)
    return start.secret, start.backup_codes


class CountingPool(HashingPool):
    def __init__(self, inner: HashingPool) -> None:
        self._inner = inner
        self.calls = 0

    async def matches(self, stored_hash: str | None, value: str) -> bool:
        self.calls += 1
        return await self._inner.matches(stored_hash, value)


async def test_one_backup_code_attempt_costs_at_most_one_slow_hash(runtime: Runtime) -> None:
    """Right or wrong, a backup-code attempt compares against one stored hash (the lookup bucket), not ten."""
    _, codes = await _activate(runtime)
    counting = CountingPool(runtime.hashing)
    runtime.mfa._hashing = counting  # the service's only hashing dependency
    await runtime.mfa.verify(ALICE, codes[4])
    assert counting.calls == 1
    wrong = codes[4][:2] + ("0000-0000-00" if codes[4][2:] != "00-0000-0000" else "11-1111-1111")
    with pytest.raises(InvalidCode):
        await runtime.mfa.verify(ALICE, wrong)
    assert counting.calls <= 2
    unrelated = next(c for c in backup_codes.generate(50) if all(c[:2] != k[:2] for k in codes))
    with pytest.raises(InvalidCode):
        await runtime.mfa.verify(ALICE, unrelated)
    assert counting.calls <= 2, "a code in an empty bucket costs no slow hash at all"


async def test_argon2_runs_off_the_event_loop_thread_at_a_lower_priority(runtime: Runtime) -> None:
    """Slow hashing happens in the worker pool, never on the thread running the event loop, and its threads run
    at nice HASHING_NICE (19), so a sign-in flood sharing a core with the loop cannot delay other requests
    (S6 in docs/performance.md: event-loop lag p99 18 ms -> 4.4 ms)."""
    loop_thread = threading.get_ident()
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[tuple[int, int]] = []
    hasher = runtime.hashing._hasher
    original = hasher.hash

    def spy(value: str) -> str:
        seen.append((threading.get_ident(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return original(value)

    hasher.hash = spy  # type: ignore[method-assign]
    await runtime.mfa.start_enrollment(ALICE)
    assert len(seen) == 10 and loop_thread not in {thread for thread, _ in seen}
    assert {nice for _, nice in seen} == {min(loop_nice + HASHING_NICE, 19)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice  # the loop's own is unchanged


async def test_successful_use_re_encrypts_under_the_new_primary_key(runtime: Runtime, tmp_path: Path) -> None:
    """After a key rotation, the first successful verification moves the secret to the new primary key."""
    secret, _ = await _activate(runtime)
    assert (await runtime.store.get_enrollment("alice")).key_id == "test-1"  # type: ignore[union-attr]
    old = json.loads((tmp_path / "keys" / "keyring.json").read_text())
    new = json.loads(new_keyring_document("test-2"))
    old["keys"][0]["status"] = "decrypt-only"
    rotated = json.dumps({"primary": "test-2", "keys": old["keys"] + new["keys"]})
    (tmp_path / "keys" / "keyring.json").write_text(rotated)
    await runtime.secrets.cache.refresh()  # what SIGHUP or the cache TTL does in a running gateway
    assert runtime.keys.keyring.primary == "test-2"
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    await runtime.mfa.verify(ALICE, current_code(secret, clock))
    enrollment = await runtime.store.get_enrollment("alice")
    assert enrollment is not None and enrollment.key_id == "test-2"
    clock.advance(30)
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"


async def test_audit_events_reach_the_json_lines_file_and_the_database(tmp_path: Path) -> None:
    """With audit.store on, each event is a JSON line in audit.path and a row the admin CLI can show."""
    clock = FakeClock()
    runtime = build_runtime(make_settings(tmp_path), clock=clock)
    await runtime.store.migrate()
    await runtime.mfa.start_enrollment(ALICE)
    events = await runtime.store.recent_audit("alice", 10)
    await runtime.close()
    assert [e.event for e in events] == ["mfa.enroll.start"]
    lines = (tmp_path / "audit.log").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["event"] == "mfa.enroll.start" and record["user"] == "alice"
    assert record["client_ip"] == "192.0.2.10" and record["result"] == "success"


async def test_a_failing_lazy_re_encryption_never_turns_a_correct_code_into_a_failure(runtime: Runtime) -> None:
    """The code is accepted even when moving the secret to the new key fails (Vault or the database unreachable):
    the code's time step is already claimed, so a 503 would make the user's retry look like a replay."""
    secret, _ = await _activate(runtime)
    cipher = runtime.mfa._cipher

    class UnreachableVault(type(cipher)):  # type: ignore[misc]
        @property
        def primary(self) -> str:
            return "another-key"  # so the row is due for re-encryption

        async def reencrypt(self, ciphertext: bytes, *, context: str) -> bytes:
            raise DependencyUnavailable("vault", "unreachable")

    runtime.mfa._cipher = UnreachableVault(lambda: runtime.keys.keyring)
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"
    assert (await runtime.store.get_enrollment("alice")).key_id == "test-1"  # type: ignore[union-attr]


async def test_a_failing_replay_mark_write_is_a_503_not_a_success(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A correct code whose step cannot be kept with the enrollment (the database unavailable) is not accepted: the
    caller gets the dependency error (a 503), never a success without the durable replay mark; the next code works."""
    secret, _ = await _activate(runtime)
    clock = runtime.clock
    assert isinstance(clock, FakeClock)

    async def unavailable(user_id: str, step: int) -> bool:
        raise DependencyUnavailable("database")

    with monkeypatch.context() as patched:
        patched.setattr(runtime.store, "claim_totp_step", unavailable)
        with pytest.raises(DependencyUnavailable):
            await runtime.mfa.verify(ALICE, current_code(secret, clock))
    clock.advance(30)
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"


@pytest.mark.parametrize("failure", ["dependency", "unexpected"])
async def test_an_attempt_that_could_not_be_judged_gives_its_count_back(runtime: Runtime, failure: str) -> None:
    """Codes sent while the TOTP key cannot be opened (Vault or the keyring out of service: a 503), or while opening
    it fails unexpectedly, are not counted as guesses and leave no reservation behind: after more such attempts than
    the limit allows, the user and the address are not locked and the right code works at once."""
    secret, _ = await _activate(runtime)
    working = runtime.mfa._cipher
    error = DependencyUnavailable("vault", "unreachable") if failure == "dependency" else RuntimeError("a bug")

    class KeyOutOfService(type(working)):  # type: ignore[misc]
        async def decrypt(self, ciphertext: bytes, *, context: str) -> object:
            raise error

    runtime.mfa._cipher = KeyOutOfService(lambda: runtime.keys.keyring)
    for _ in range(runtime.settings.limits.user.max_failures + 1):
        with pytest.raises(type(error)):
            await runtime.mfa.verify(ALICE, "123456")
    runtime.mfa._cipher = working
    assert await runtime.state.lock_remaining(["user:alice", "ip:192.0.2.10"], runtime.clock()) == 0.0
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"


async def test_a_password_check_that_failed_unjudged_leaves_no_reservation(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in whose password could not be checked (the users file unreadable, say) fails without counting: more
    of them than the limit allows are each answered with that error, never a lockout, and the next works."""
    add_user(runtime.settings, "carol", "a password long enough")
    assert runtime.login is not None
    with monkeypatch.context() as patched:

        def unreadable(user_id: str) -> object:
            raise OSError("the users file cannot be read")

        patched.setattr(runtime.login, "_users", unreadable)
        for _ in range(runtime.settings.limits.user.max_failures + 1):
            with pytest.raises(OSError):
                await runtime.login.check_password("carol", "a password long enough", "192.0.2.20")
    assert (await runtime.login.check_password("carol", "a password long enough", "192.0.2.20")).username == "carol"


async def test_audit_events_emitted_together_share_commits_and_none_is_lost(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty events emitted at once are committed in a few transactions (group commit), each emit returns only once
    its event is committed, and the event of a caller cancelled while waiting is written all the same."""
    store = runtime.store
    transactions: list[int] = []
    record = store.record_audit

    async def counting(events: Any) -> None:
        transactions.append(len(events))
        await record(events)

    monkeypatch.setattr(store, "record_audit", counting)
    sink = StoreAudit(store)
    events = [AuditEvent(at=1000.0 + n, event="test.event", result=str(n), user_id="carol") for n in range(50)]
    await asyncio.gather(*(sink.emit(event) for event in events))
    assert sum(transactions) == 50 and len(transactions) <= 3, transactions
    assert sorted(int(e.result) for e in await store.recent_audit("carol", 100)) == list(range(50))

    cancelled = asyncio.create_task(sink.emit(AuditEvent(at=2000.0, event="test.event", result="late", user_id="dave")))
    await asyncio.sleep(0)  # queued, its commit under way
    cancelled.cancel()
    await sink.emit(AuditEvent(at=2001.0, event="test.event", result="after", user_id="dave"))
    assert {e.result for e in await store.recent_audit("dave", 10)} == {"late", "after"}


async def test_concurrent_sqlite_writes_commit_together(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty writes asked for at once on a SQLite file are one transaction (group commit) in one hand-off to a
    thread, and none takes a connection from either engine's pool."""
    await _activate(runtime)
    transactions = _counting_transactions(runtime.store, monkeypatch)  # type: ignore[arg-type]
    taken = _checkouts(runtime)
    writes = [runtime.store.record_audit([AuditEvent(at=float(n), event="w", result="ok")]) for n in range(10)]
    writes += [runtime.store.claim_totp_step("alice", 10**9 + n) for n in range(10)]
    outcomes = await asyncio.gather(*writes)
    assert transactions == [20] and taken == []
    assert outcomes[10:] == [True] * 10  # each newer step claimed in turn, in the order asked
    assert not await runtime.store.claim_totp_step("alice", 10**9 + 9)


async def test_sqlite_group_commit_fails_only_the_write_that_failed(runtime: Runtime) -> None:
    """A write SQLite refuses (a session record whose sid exists) rolls back its own statements only: the writes
    committed with it are kept, and a caller cancelled while its write was queued still has it committed."""
    await _activate(runtime)
    clock = runtime.clock
    now = clock()

    def record(record_id: str, sid: str) -> SessionRecord:
        return SessionRecord(record_id, sid, "alice", ("pwd", "otp"), "Firefox", now, now + 60)

    await runtime.store.add_session_record(record("r0", "sid-taken"), now=now)
    outcomes = await asyncio.gather(
        runtime.store.add_session_record(record("r1", "sid-1"), now=now),
        runtime.store.add_session_record(record("r2", "sid-taken"), now=now),
        runtime.store.claim_totp_step("alice", 10**9),
        return_exceptions=True,
    )
    assert outcomes[0] is None and isinstance(outcomes[1], sqlite3.IntegrityError) and outcomes[2] is True
    assert sorted(r.id for r in await runtime.store.session_records_of("alice", now)) == ["r0", "r1"]

    cancelled = asyncio.create_task(runtime.store.claim_totp_step("alice", 10**9 + 1))
    await asyncio.sleep(0)  # queued
    cancelled.cancel()
    await runtime.store.record_audit([AuditEvent(now, "w", "after", user_id="alice")])
    assert not await runtime.store.claim_totp_step("alice", 10**9 + 1)  # the cancelled caller's claim was kept


async def test_a_failing_write_rolls_back_its_own_earlier_statements_only(runtime: Runtime, tmp_path: Path) -> None:
    """A session record refused (its sid exists) rolls back the purge of ended records it ran first, in its own
    savepoint, while the claim committed in the same transaction is kept."""
    await _activate(runtime)
    now = runtime.clock()
    ended = SessionRecord("r-old", "sid-old", "bob", ("pwd",), "Firefox", now - 120, now - 60)
    taken = SessionRecord("r0", "sid-taken", "alice", ("pwd", "otp"), "Firefox", now, now + 60)
    await runtime.store.add_session_record(ended, now=now - 90)
    await runtime.store.add_session_record(taken, now=now - 90)
    outcomes = await asyncio.gather(
        runtime.store.add_session_record(dataclasses.replace(taken, id="r1"), now=now),
        runtime.store.claim_totp_step("alice", 10**9),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], sqlite3.IntegrityError) and outcomes[1] is True
    with contextlib.closing(sqlite3.connect(tmp_path / "mfa.db")) as database:
        assert database.execute("SELECT id FROM session_records ORDER BY id").fetchall() == [("r-old",), ("r0",)]


async def test_a_failure_that_ends_the_whole_transaction_fails_its_batch_and_the_next_commits(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A statement after which SQLite itself rolled the whole transaction back (here a trigger's RAISE(ROLLBACK))
    fails every write of that transaction, none of them kept; the lane's next transaction commits."""
    await _activate(runtime)
    with contextlib.closing(sqlite3.connect(tmp_path / "mfa.db", isolation_level=None)) as database:
        database.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.result = 'fatal' "
            "BEGIN SELECT RAISE(ROLLBACK, 'refused'); END"
        )
    outcomes = await asyncio.gather(
        runtime.store.claim_totp_step("alice", 10**9),
        runtime.store.record_audit([AuditEvent(1.0, "w", "fatal", user_id="carol")]),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, sqlite3.IntegrityError) for outcome in outcomes), outcomes
    assert await runtime.store.claim_totp_step("alice", 10**9)  # the first claim was not kept, this one is


async def test_sqlite_lane_writes_take_the_process_writer_turn(runtime: Runtime) -> None:
    """The lane's transactions queue behind this process's other writes (the writer turn), so they never poll the
    file lock against them; the sign-in read has no busy timeout (it never waits on the loop), the writer has one."""
    await _activate(runtime)
    store = runtime.store
    async with store._writer_turn(True):  # type: ignore[attr-defined]
        claim = asyncio.create_task(store.claim_totp_step("alice", 10**9))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not claim.done()
    assert await claim
    assert await store.get_enrollment("alice") is not None
    lane = store._lane  # type: ignore[attr-defined]
    assert lane._reader.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    assert lane._writer.execute("PRAGMA busy_timeout").fetchone()[0] == int(sql_store.SQLITE_BUSY_TIMEOUT * 1000)


async def test_sqlite_reads_of_a_sign_in_run_on_the_loop_others_in_a_thread(runtime: Runtime) -> None:
    """The enrollment read of every sign-in runs on the event loop's thread (no hand-off, no pooled connection);
    other reads are one hand-off to a worker thread (about half the CPU of the nine the asyncio driver makes per
    read). Both see what the asyncio engine wrote."""
    await _activate(runtime)
    taken, handoffs = _checkouts(runtime), _handoffs(runtime)
    enrollment = await runtime.store.get_enrollment("alice")
    assert enrollment is not None and enrollment.active
    assert taken == [] and handoffs == []
    assert await runtime.store.count_unused_backup_codes("alice") == 10
    assert [e.user_id for e in await runtime.store.list_enrollments(None, 10)] == ["alice"]
    assert taken == ["read"] * 2 and len(handoffs) == 2


async def test_a_sign_in_read_of_a_locked_sqlite_file_waits_off_the_loop(tmp_path: Path) -> None:
    """Another connection holds a rollback-journal file exclusively (readers locked out; in WAL mode readers never
    are, but a file SQLite could not switch to WAL stays in this mode): a lane read does not stall the event loop in
    SQLite's busy wait; it waits in a worker thread and answers once the lock is gone."""
    path = tmp_path / "journal.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE t (user TEXT PRIMARY KEY, n INTEGER)")
    setup.execute("INSERT INTO t VALUES ('alice', 7)")
    setup.close()

    def connect(timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)

    table = Table("t", MetaData(), Column("user", Text, primary_key=True), Column("n", Integer))
    prepared = Prepared.of(select(table).where(table.c.user == bindparam("user")))
    threads = ThreadPoolExecutor(1)
    lane = SqliteLane(connect, threads, contextlib.nullcontext, busy_timeout=30.0)  # type: ignore[arg-type]
    other = connect(5.0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        read = asyncio.create_task(lane.read(prepared, {"user": "alice"}))
        turns = 0
        while turns < 200 and not read.done():  # the loop keeps turning while the read waits
            await asyncio.sleep(0)
            turns += 1
        assert turns == 200 and not read.done()
    finally:
        other.rollback()
        other.close()
    assert [(row.user, row.n) for row in await read] == [("alice", 7)]
    lane.close()
    threads.shutdown()


def _checkouts(runtime: Runtime) -> list[str]:
    """Grows by "write" or "read" each time a connection is taken from the asyncio engine or the threads' engine."""
    taken: list[str] = []
    event.listen(runtime.store.engine.sync_engine.pool, "checkout", lambda *_: taken.append("write"))
    event.listen(runtime.store._sqlite_sync.pool, "checkout", lambda *_: taken.append("read"))  # type: ignore[attr-defined]
    return taken


def _handoffs(runtime: Runtime) -> list[object]:
    """Grows by one each time the store hands work to one of its threads."""
    threads, handed = runtime.store._sqlite_threads, []  # type: ignore[attr-defined]
    submit = threads.submit

    def counting(*args: Any, **kwargs: Any) -> Any:
        handed.append(args[0])
        return submit(*args, **kwargs)

    threads.submit = counting
    return handed


async def test_the_writes_of_a_verification_go_through_the_sqlite_lane(runtime: Runtime) -> None:
    """The writes every TOTP sign-in makes (the durable replay mark, the audit rows, the session record) are
    committed by the lane: none takes a connection from either engine, and reads through either engine see them."""
    await _activate(runtime)
    taken = _checkouts(runtime)
    clock = runtime.clock
    assert isinstance(clock, FakeClock)
    assert await runtime.store.claim_totp_step("alice", 10**9) and not await runtime.store.claim_totp_step("alice", 1)
    await runtime.store.record_audit([AuditEvent(clock(), "w", str(n), user_id="bob") for n in range(3)])
    record = SessionRecord("r1", "sid-1", "alice", ("pwd", "otp"), "Firefox", clock(), clock() + 60)
    await runtime.store.add_session_record(record, now=clock())
    assert taken == []
    assert sorted(e.result for e in await runtime.store.recent_audit("bob", 10)) == ["0", "1", "2"]
    assert [r.id for r in await runtime.store.session_records_of("alice", clock())] == ["r1"]
    await runtime.store.activate("alice", clock())  # a write through the asyncio engine still works beside them
    assert "write" in taken


async def test_one_failing_audit_event_fails_only_its_own_emitter(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the database refuses because of one event is written again event by event: the others are kept and
    only that event's emitter sees the error. flush() returns once everything emitted is kept."""
    store = runtime.store
    record = store.record_audit

    async def refusing(events: Any) -> None:
        if any(event.result == "bad" for event in events):
            raise ValueError("a value the database refuses")
        await record(events)

    monkeypatch.setattr(store, "record_audit", refusing)
    sink = StoreAudit(store)
    results = ["bad" if n == 7 else str(n) for n in range(20)]
    outcomes = await asyncio.gather(
        *(sink.emit(AuditEvent(at=3000.0 + n, event="e", result=r, user_id="erin")) for n, r in enumerate(results)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes if o is not None] == ["ValueError"] and outcomes[7] is not None
    assert len(await store.recent_audit("erin", 100)) == 19

    late = asyncio.create_task(sink.emit(AuditEvent(at=4000.0, event="e", result="late", user_id="finn")))
    await asyncio.sleep(0)
    late.cancel()
    await sink.flush()
    assert [e.result for e in await store.recent_audit("finn", 5)] == ["late"]


async def test_sqlite_writers_queued_behind_a_foreign_lock_fail_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the SQLite file's write lock: writes queued in this process give up after one busy
    timeout together (503), not one timeout after another: they wait in one transaction of the lane (one after
    another, each of the six would wait out the timeout)."""
    monkeypatch.setattr(sql_store, "SQLITE_BUSY_TIMEOUT", 1.0)
    path = tmp_path / "locked.db"
    store = sql_store.SqlEnrollmentStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    transactions = _counting_transactions(store, monkeypatch)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        writes = [store.record_audit([AuditEvent(at=float(n), event="w", result="ok")]) for n in range(6)]
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        other.rollback()
        other.close()
    try:
        assert all(isinstance(o, DependencyUnavailable) for o in outcomes), outcomes
        assert transactions == [6]
        await store.record_audit([AuditEvent(at=7.0, event="w", result="after")])  # the lock gone, writes go on
    finally:
        await store.close()
    with pytest.raises(DependencyUnavailable):  # a closed store's lane refuses, as an unreachable database does
        await store.record_audit([AuditEvent(at=8.0, event="w", result="closed")])


def _counting_transactions(store: sql_store.SqlEnrollmentStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Grows by the number of callers' writes in each transaction the store's lane runs."""
    lane = store._lane
    assert lane is not None
    commit, transactions = lane._commit, []

    def counting(units: list[Any]) -> list[Any]:
        transactions.append(len(units))
        return commit(units)

    monkeypatch.setattr(lane, "_commit", counting)
    return transactions
