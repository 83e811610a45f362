"""``EnrollmentStore`` on SQL: SQLite (aiosqlite) for one node, PostgreSQL (asyncpg) for several replicas.

Every check-then-write is one conditional statement (upsert with a WHERE, UPDATE ... WHERE), so correctness
under concurrent replicas rests on the database, not on Python-side locks. Driver and connection failures
surface as ``DependencyUnavailable("database")`` from a single guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from mfa_gateway.adapters.sql.migrate import upgrade_to_head
from mfa_gateway.adapters.sql.prepared import Params, Prepared, Write, named_row
from mfa_gateway.adapters.sql.schema import (
    audit_events,
    backup_codes,
    device_grants,
    enrollments,
    session_records,
    webauthn_credentials,
)
from mfa_gateway.adapters.sql.sqlite_lane import SqliteLane
from mfa_gateway.core.devices import DeviceGrant
from mfa_gateway.core.errors import (
    AlreadyEnrolled,
    CredentialExists,
    DependencyUnavailable,
    NotEnrolled,
    TooManyCredentials,
)
from mfa_gateway.core.model import (
    AuditEvent,
    Enrollment,
    EnrollmentStatus,
    NewBackupCode,
    StoredBackupCode,
    TotpAlgorithm,
    TotpParams,
    WebAuthnCredential,
)
from mfa_gateway.core.session_records import SessionRecord
from mfa_gateway.ports import CredentialStore, DeviceStore, EnrollmentStore, PasswordSource, SessionRecordStore

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key shared by every replica of the gateway ("mfa_mig" in ASCII).
MIGRATION_LOCK_KEY = 0x6D66615F6D6967
# The first half of the (int, int) advisory lock one user's credential registrations take ("mfaw" in ASCII).
CREDENTIALS_LOCK_SPACE = 0x6D666177
# The same for one user's new remembered devices ("mfad" in ASCII).
DEVICES_LOCK_SPACE = 0x6D666164
PING_TIMEOUT = 5.0
SQLITE_READERS = 4
"""Threads that run SQLite's work off the loop: the reads of the threads' engine (one pooled connection each), the
lane's group commits and the reads it hands off."""
SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite write waits for the file's write lock (held by another process) before it is unavailable."""
# Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE).
_WRITE = "mfa_gateway_write"
# PostgreSQL SQLSTATE classes meaning "the server cannot serve us now": connection exception, insufficient
# resources (too many connections, disk full), operator intervention (shutdown, starting up), system error.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")

PENDING = EnrollmentStatus.PENDING.value
ACTIVE = EnrollmentStatus.ACTIVE.value

# The statements of every sign-in, built once (on a SQLite file the lane runs their SQL text directly).
_ENROLLMENT = Prepared.of(select(enrollments).where(enrollments.c.user_id == bindparam("user")))
_CLAIM_STEP = Prepared.of(
    # One conditional UPDATE is the arbiter: PostgreSQL re-checks the WHERE on the row it waited to lock, and
    # SQLite runs it under the write lock, so of two replicas claiming one step exactly one sees a row.
    update(enrollments)
    .where(
        enrollments.c.user_id == bindparam("user"),
        or_(enrollments.c.last_step.is_(None), enrollments.c.last_step < bindparam("step")),
    )
    .values(last_step=bindparam("step"))
)
_PURGE_SESSION_RECORDS = Prepared.of(
    # Indexed: revoked_at is not, and an OR with it would scan the table.
    delete(session_records).where(session_records.c.expires_at <= bindparam("now"))
)
_ADD_SESSION_RECORD = Prepared.of(insert(session_records), columns=[column.name for column in session_records.c])
_ADD_AUDIT_EVENTS = Prepared.of(
    insert(audit_events), columns=[column.name for column in audit_events.c if column is not audit_events.c.id]
)


_AUTH_FAILED = frozenset({"28P01", "28000"})  # invalid_password, invalid_authorization_specification


def _rotating_login(source: PasswordSource) -> Any:
    """A ``do_connect`` hook: each new connection logs in with the current password; a refused one makes it re-read
    the secret and try the candidates again (current, then AWSPREVIOUS), so a rotation drops no request."""

    def connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        refused: BaseException | None = None
        for attempt in range(2):
            if attempt:
                await_only(source.refresh())
            for username, password in source.candidates():
                login = {"password": password, **({"user": username} if username else {})}
                try:
                    return dialect.connect(*cargs, **{**cparams, **login})
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) not in _AUTH_FAILED:
                        raise
                    refused = exc
        assert refused is not None
        raise refused

    return connect


class SqlEnrollmentStore(EnrollmentStore, CredentialStore, DeviceStore, SessionRecordStore):
    """The store over one ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL: enrollments, backup codes, audit
    events, WebAuthn credentials and remembered devices.

    ``password`` (e.g. from a secret file) is set on the parsed URL, so it never has to appear in configuration;
    the URL is only ever logged with the password masked. ``pool_size``: PostgreSQL connections kept open (10 more
    may open during a burst).
    """

    def __init__(
        self, url: str, *, password: str | PasswordSource | None = None, echo: bool = False, pool_size: int = 5
    ) -> None:
        sa_url = make_url(url)
        if isinstance(password, str):
            sa_url = sa_url.set(password=password)
        self._safe_url = sa_url.render_as_string(hide_password=True)
        self._dialect = sa_url.get_backend_name()
        self._sqlite_writer: asyncio.Lock | None = None
        self._sqlite_sync: Engine | None = None
        self._sqlite_threads: ThreadPoolExecutor | None = None
        self._lane: SqliteLane | None = None
        if self._dialect == "sqlite":
            self._engine = _sqlite_engine(sa_url, echo)
            self._sqlite_writer = asyncio.Lock()
            self._sqlite_sync = _sqlite_read_engine(sa_url, echo)
            if self._sqlite_sync is not None and sa_url.database:  # (a file has a name: said for the type checker)
                # Threads of their own: the loop's default pool also runs Vault Transit calls and QR codes.
                self._sqlite_threads = ThreadPoolExecutor(SQLITE_READERS, thread_name_prefix="sqlite")
                self._lane = SqliteLane(
                    functools.partial(_sqlite_connect, sa_url.database),
                    self._sqlite_threads,
                    lambda: self._writer_turn(True),
                    SQLITE_BUSY_TIMEOUT,
                )
        elif self._dialect == "postgresql":
            self._engine = create_async_engine(
                sa_url,
                echo=echo,
                pool_pre_ping=True,
                pool_size=pool_size,
                max_overflow=10,
                pool_timeout=10,
                pool_recycle=1800,
                connect_args={"timeout": 10, "command_timeout": 30},
            )
        else:
            raise ValueError(f"unsupported database {self._dialect!r}: use sqlite+aiosqlite or postgresql+asyncpg")
        if isinstance(password, PasswordSource):
            event.listen(self._engine.sync_engine, "do_connect", _rotating_login(password))

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine, for tests and administrative tooling."""
        return self._engine

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Turn every "cannot talk to the database" failure into ``DependencyUnavailable``."""
        try:
            yield
        # asyncio.TimeoutError and ConnectionRefusedError are OSErrors; sqlite3's own errors come from the lane,
        # asyncpg's from _driver.
        except Exception as exc:
            if not isinstance(exc, PoolTimeoutError | OSError) and not _is_unavailable(exc):
                raise
            log.warning("database %s unavailable: %s", self._safe_url, type(exc).__name__)
            raise DependencyUnavailable("database") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self._guard(), self._writer_turn(write), self._engine.connect() as conn:
            if write:
                await conn.execution_options(**{_WRITE: True})
            async with conn.begin():
                yield conn

    async def _read(self, statement: Select[Any] | Prepared, params: dict[str, Any] | None = None) -> Sequence[Any]:
        """The rows of one read-only statement. A ``Prepared`` one is read by the lane on a SQLite file (on the
        loop) and on the asyncpg driver on PostgreSQL (``_driver``). On a SQLite file any other is one hand-off to a
        worker thread on a plain sqlite3 connection: through the asyncio driver it is nine (connection, BEGIN, the
        statement, the fetch, the cursor, COMMIT, the pool's reset), about 1 ms of CPU per read."""
        if isinstance(statement, Prepared):
            if self._lane is not None:
                async with self._guard():
                    return await self._lane.read(statement, params or {})
            if self._dialect == "postgresql":
                async with self._driver() as driver:
                    records = await driver.fetch(statement.postgresql, *statement.arguments(params or {}))
                return [named_row(record.keys(), record.values()) for record in records]
            async with self._transaction(write=False) as conn:
                return (await conn.execute(statement.statement, params)).all()
        if self._sqlite_sync is None or self._sqlite_threads is None:
            async with self._transaction(write=False) as conn:
                rows: Sequence[Row[Any]] = (await conn.execute(statement)).all()
            return rows
        loop = asyncio.get_running_loop()
        async with self._guard():
            return await loop.run_in_executor(self._sqlite_threads, self._read_in_thread, self._sqlite_sync, statement)

    @staticmethod
    def _read_in_thread(engine: Engine, statement: Select[Any]) -> Sequence[Row[Any]]:
        with engine.connect() as conn, conn.begin():
            return conn.execute(statement).all()

    async def _write(self, *writes: Write) -> list[int]:
        """Run ``writes`` in one write transaction; the rows each matched. On a SQLite file the lane commits them
        with the writes other callers asked for meanwhile (group commit, one hand-off to a thread per
        transaction)."""
        if self._lane is not None:
            async with self._guard():
                return await self._lane.write(*writes)
        if self._dialect == "postgresql":
            async with self._driver() as driver, driver.transaction():
                return [await _run_on_asyncpg(driver, prepared, params) for prepared, params in writes]
        async with self._transaction(write=True) as conn:
            return [(await conn.execute(prepared.statement, params)).rowcount for prepared, params in writes]

    @contextlib.asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        """A pooled PostgreSQL connection's asyncpg connection, for ``Prepared`` statements: SQLAlchemy's pool (its
        liveness check, the rotating login, the TLS options) without its per-statement layers. A read is one round
        trip, without the BEGIN and COMMIT SQLAlchemy wraps it in; asyncpg prepares each text once per connection.

        SQLAlchemy does not see what runs on the driver, so what it would do is done here: a connection that an
        error other than the server refusing a statement interrupted (a cancellation, a timeout, a connection lost)
        is invalidated, as is one left inside a transaction, never handed out again; a write on it could otherwise
        report success and never be committed (the pool's reset and ping would run inside that transaction)."""
        async with self._guard(), self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                yield driver
            except BaseException as exc:
                if not _refused_by_server(exc):
                    raw.invalidate(exc if isinstance(exc, Exception) else None)
                    if isinstance(exc, Exception) and driver.is_closed():
                        raise DependencyUnavailable("database") from exc
                raise
            if driver.is_in_transaction():
                raw.invalidate()

    @contextlib.asynccontextmanager
    async def _writer_turn(self, write: bool) -> AsyncIterator[None]:
        """SQLite has one writer at a time: this process's writers queue here, in order, instead of each pooled
        connection polling the file lock (SQLite's busy handler sleeps and retries, which under concurrent writes
        cost more time than the writes). Other processes sharing the file still wait through the busy timeout."""
        if not write or self._sqlite_writer is None:
            yield
            return
        # At most one busy timeout in the queue too (a TimeoutError, which _guard reports as unavailable), so that
        # writers queued behind a file locked by another process fail together, not one timeout after another.
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT):
            await self._sqlite_writer.acquire()
        try:
            yield
        finally:
            self._sqlite_writer.release()

    async def migrate(self) -> None:
        async with self._transaction(write=True) as conn:
            if self._dialect == "postgresql":
                # Replicas starting together migrate one after another; the lock ends with the transaction.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(upgrade_to_head)  # alembic is imported only if the schema is behind

    async def ping(self) -> None:
        async with self._guard(), asyncio.timeout(PING_TIMEOUT), self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self._lane is not None:
            await self._lane.flush()  # writes asked for before close are committed
        await self._engine.dispose()
        if self._sqlite_threads is not None:
            await asyncio.to_thread(self._sqlite_threads.shutdown, True)  # reads under way finish and give back
        if self._lane is not None:
            self._lane.close()
        if self._sqlite_sync is not None:
            self._sqlite_sync.dispose()

    async def get_enrollment(self, user_id: str) -> Enrollment | None:
        rows = await self._read(_ENROLLMENT, {"user": user_id})
        return _enrollment(rows[0]) if rows else None

    async def save_pending(self, enrollment: Enrollment, codes: Sequence[NewBackupCode]) -> None:
        if enrollment.status is not EnrollmentStatus.PENDING:
            raise ValueError("save_pending stores pending enrollments only")
        values = {
            "user_id": enrollment.user_id,
            "secret_ciphertext": enrollment.secret_ciphertext,
            "key_id": enrollment.key_id,
            "algorithm": enrollment.params.algorithm.value,
            "digits": enrollment.params.digits,
            "period": enrollment.params.period,
            "status": PENDING,
            "created_at": enrollment.created_at,
            "activated_at": None,
            "updated_at": enrollment.created_at,
            "last_step": None,  # a new secret: no step of it was accepted yet
        }
        async with self._transaction(write=True) as conn:
            # The upsert row-locks the enrollment (PostgreSQL) or holds the write lock (SQLite): concurrent
            # savers for one user serialise here, so the code swap below belongs to this statement's winner.
            stored = (await conn.execute(self._upsert_pending(values))).first()
            if stored is None:
                raise AlreadyEnrolled()
            await self._put_codes(conn, enrollment.user_id, codes)

    def _upsert_pending(self, values: dict[str, Any]) -> Any:
        """INSERT, or overwrite the existing row only while it is pending; RETURNING tells which happened."""
        updated = {name: value for name, value in values.items() if name != "user_id"}
        still_pending = enrollments.c.status == PENDING
        if self._dialect == "postgresql":
            pg = postgresql.insert(enrollments).values(values)
            return pg.on_conflict_do_update(
                index_elements=[enrollments.c.user_id], set_=updated, where=still_pending
            ).returning(enrollments.c.user_id)
        lite = sqlite.insert(enrollments).values(values)
        return lite.on_conflict_do_update(
            index_elements=[enrollments.c.user_id], set_=updated, where=still_pending
        ).returning(enrollments.c.user_id)

    async def activate(self, user_id: str, now: float) -> bool:
        stmt = (
            update(enrollments)
            .where(enrollments.c.user_id == user_id, enrollments.c.status == PENDING)
            .values(status=ACTIVE, activated_at=now, updated_at=now)
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def delete_enrollment(self, user_id: str) -> bool:
        async with self._transaction(write=True) as conn:
            deleted = await conn.execute(delete(enrollments).where(enrollments.c.user_id == user_id))
            # ON DELETE CASCADE already removed the codes; this also covers a connection without foreign keys.
            await conn.execute(delete(backup_codes).where(backup_codes.c.user_id == user_id))
            return deleted.rowcount == 1

    async def update_secret(self, user_id: str, expected_ciphertext: bytes, ciphertext: bytes, key_id: str) -> bool:
        stmt = (
            update(enrollments)
            .where(enrollments.c.user_id == user_id, enrollments.c.secret_ciphertext == expected_ciphertext)
            # Bookkeeping only: no decision reads updated_at, so the port passes no ``now`` here.
            .values(secret_ciphertext=ciphertext, key_id=key_id, updated_at=time.time())
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def list_enrollments(self, after_user: str | None, limit: int) -> list[Enrollment]:
        if limit <= 0:
            return []
        stmt = select(enrollments).order_by(enrollments.c.user_id).limit(limit)
        if after_user is not None:
            stmt = stmt.where(enrollments.c.user_id > after_user)
        return [_enrollment(row) for row in await self._read(stmt)]

    async def replace_backup_codes(self, user_id: str, codes: Sequence[NewBackupCode]) -> None:
        lock = select(enrollments.c.user_id).where(enrollments.c.user_id == user_id).with_for_update()
        async with self._transaction(write=True) as conn:
            if (await conn.execute(lock)).first() is None:
                raise NotEnrolled()
            await self._put_codes(conn, user_id, codes)

    @staticmethod
    async def _put_codes(conn: AsyncConnection, user_id: str, codes: Sequence[NewBackupCode]) -> None:
        """Swap the user's whole code set; the caller holds the enrollment row's lock."""
        await conn.execute(delete(backup_codes).where(backup_codes.c.user_id == user_id))
        if codes:
            await conn.execute(
                insert(backup_codes),
                [{"user_id": user_id, "lookup": code.lookup, "hash": code.hash} for code in codes],
            )

    async def unused_backup_codes(self, user_id: str, lookup: str) -> list[StoredBackupCode]:
        stmt = (
            select(backup_codes.c.id, backup_codes.c.lookup, backup_codes.c.hash)
            .where(
                backup_codes.c.user_id == user_id,
                backup_codes.c.lookup == lookup,
                backup_codes.c.used_at.is_(None),
            )
            .order_by(backup_codes.c.id)
        )
        return [StoredBackupCode(id=row.id, lookup=row.lookup, hash=row.hash) for row in await self._read(stmt)]

    async def consume_backup_code(self, code_id: int, now: float) -> bool:
        # The WHERE used_at IS NULL makes this single statement the arbiter: one caller sees rowcount 1.
        stmt = (
            update(backup_codes)
            .where(backup_codes.c.id == code_id, backup_codes.c.used_at.is_(None))
            .values(used_at=now)
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def claim_totp_step(self, user_id: str, step: int) -> bool:
        return (await self._write((_CLAIM_STEP, {"user": user_id, "step": step}))) == [1]

    async def count_unused_backup_codes(self, user_id: str) -> int:
        stmt = (
            select(func.count())
            .select_from(backup_codes)
            .where(backup_codes.c.user_id == user_id, backup_codes.c.used_at.is_(None))
        )
        return int((await self._read(stmt))[0][0])

    async def record_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = [
            {
                "at": event.at,
                "event": event.event,
                "result": event.result,
                "user_id": event.user_id,
                "client_ip": event.client_ip,
                "detail": json.dumps(dict(event.detail), sort_keys=True, ensure_ascii=False),
            }
            for event in events
        ]
        await self._write((_ADD_AUDIT_EVENTS, rows))

    async def recent_audit(self, user_id: str, limit: int) -> list[AuditEvent]:
        if limit <= 0:
            return []
        stmt = (
            select(audit_events)
            .where(audit_events.c.user_id == user_id)
            .order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
            .limit(limit)
        )
        return [_audit_event(row) for row in await self._read(stmt)]

    # -- WebAuthn credentials -------------------------------------------------------------------------------

    async def add_credential(self, credential: WebAuthnCredential, *, limit: int) -> None:
        table = webauthn_credentials
        try:
            async with self._transaction(write=True) as conn:
                if self._dialect == "postgresql":
                    # One user's registrations, on any replica, count and insert one after another (SQLite: the
                    # write transaction already runs alone), so two at once cannot both take the last place.
                    lock = text("SELECT pg_advisory_xact_lock(:space, hashtext(:user))")
                    await conn.execute(lock, {"space": CREDENTIALS_LOCK_SPACE, "user": credential.user_id})
                taken = select(table.c.user_id).where(table.c.credential_id == credential.credential_id)
                if (await conn.execute(taken)).first() is not None:
                    raise CredentialExists()
                held = select(func.count()).select_from(table).where(table.c.user_id == credential.user_id)
                if int((await conn.execute(held)).scalar_one()) >= limit:
                    raise TooManyCredentials()
                await conn.execute(insert(table).values(_credential_row(credential)))
        except IntegrityError as exc:  # the same id registered at this moment by another user's ceremony
            raise CredentialExists() from exc

    async def credentials_of(self, user_id: str) -> list[WebAuthnCredential]:
        table = webauthn_credentials
        stmt = select(table).where(table.c.user_id == user_id).order_by(table.c.created_at, table.c.credential_id)
        return [_credential(row) for row in await self._read(stmt)]

    async def get_credential(self, user_id: str, credential_id: bytes) -> WebAuthnCredential | None:
        table = webauthn_credentials
        rows = await self._read(select(table).where(table.c.user_id == user_id, table.c.credential_id == credential_id))
        return _credential(rows[0]) if rows else None

    async def credential_by_handle(self, user_handle: bytes, credential_id: bytes) -> WebAuthnCredential | None:
        table = webauthn_credentials
        stmt = select(table).where(table.c.user_handle == user_handle, table.c.credential_id == credential_id)
        rows = await self._read(stmt)
        return _credential(rows[0]) if rows else None

    async def count_credentials(self, user_id: str) -> int:
        table = webauthn_credentials
        stmt = select(func.count()).select_from(table).where(table.c.user_id == user_id)
        return int((await self._read(stmt))[0][0])

    async def credential_counts(self, after_user: str | None, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        table = webauthn_credentials
        stmt = select(table.c.user_id, func.count()).group_by(table.c.user_id).order_by(table.c.user_id).limit(limit)
        if after_user is not None:
            stmt = stmt.where(table.c.user_id > after_user)
        return [(str(user), int(count)) for user, count in map(list, await self._read(stmt))]

    async def record_assertion(
        self, user_id: str, credential_id: bytes, *, sign_count: int, backup_state: bool, now: float
    ) -> bool:
        table = webauthn_credentials
        # One conditional UPDATE is the arbiter, as for TOTP steps: the count only moves forward, so of two
        # assertions reporting one count exactly one sees its row. Two zeros (no counter) have nothing to compare.
        forward = table.c.sign_count < sign_count if sign_count > 0 else table.c.sign_count == 0
        stmt = (
            update(table)
            .where(table.c.user_id == user_id, table.c.credential_id == credential_id, forward)
            .values(sign_count=sign_count, backup_state=backup_state, last_used_at=now)
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def rename_credential(self, user_id: str, credential_id: bytes, name: str) -> bool:
        table = webauthn_credentials
        stmt = update(table).where(table.c.user_id == user_id, table.c.credential_id == credential_id).values(name=name)
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def delete_credential(self, user_id: str, credential_id: bytes) -> bool:
        table = webauthn_credentials
        stmt = delete(table).where(table.c.user_id == user_id, table.c.credential_id == credential_id)
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def delete_credentials(self, user_id: str) -> int:
        table = webauthn_credentials
        async with self._transaction(write=True) as conn:
            return int((await conn.execute(delete(table).where(table.c.user_id == user_id))).rowcount)

    # -- remembered devices ---------------------------------------------------------------------------------

    async def add_device_grant(self, grant: DeviceGrant, *, keep: int, now: float) -> None:
        table = device_grants
        async with self._transaction(write=True) as conn:
            if self._dialect == "postgresql":
                # One user's new grants, on any replica, count and insert one after another (as credentials do).
                lock = text("SELECT pg_advisory_xact_lock(:space, hashtext(:user))")
                await conn.execute(lock, {"space": DEVICES_LOCK_SPACE, "user": grant.user_id})
            ended = or_(table.c.expires_at <= now, (table.c.user_id == grant.user_id) & table.c.revoked_at.is_not(None))
            await conn.execute(delete(table).where(ended))
            active = select(table.c.id).where(table.c.user_id == grant.user_id, table.c.revoked_at.is_(None))
            held = [row.id for row in (await conn.execute(active.order_by(table.c.created_at, table.c.id))).all()]
            surplus = held[: max(0, len(held) - keep + 1)]
            if surplus:
                await conn.execute(update(table).where(table.c.id.in_(surplus)).values(revoked_at=now))
            await conn.execute(insert(table).values(_grant_row(grant)))

    async def device_grant(self, token_hash: str) -> DeviceGrant | None:
        rows = await self._read(select(device_grants).where(device_grants.c.token_hash == token_hash))
        return _grant(rows[0]) if rows else None

    async def use_device_grant(self, grant_id: str, now: float) -> bool:
        table = device_grants
        stmt = (
            update(table)
            .where(table.c.id == grant_id, table.c.revoked_at.is_(None), table.c.expires_at > now)
            .values(last_used_at=now)
        )
        async with self._transaction(write=True) as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def device_grants_of(self, user_id: str, now: float) -> list[DeviceGrant]:
        table = device_grants
        stmt = (
            select(table)
            .where(table.c.user_id == user_id, table.c.revoked_at.is_(None), table.c.expires_at > now)
            .order_by(table.c.created_at, table.c.id)
        )
        return [_grant(row) for row in await self._read(stmt)]

    async def revoke_device_grant(self, user_id: str, grant_id: str, now: float) -> bool:
        return await self._revoke_grants(now, device_grants.c.user_id == user_id, device_grants.c.id == grant_id) == 1

    async def revoke_device_grants(self, user_id: str, now: float) -> int:
        return await self._revoke_grants(now, device_grants.c.user_id == user_id)

    async def _revoke_grants(self, now: float, *conditions: Any) -> int:
        table = device_grants
        still_active = (table.c.revoked_at.is_(None), table.c.expires_at > now)
        stmt = update(table).where(*conditions, *still_active).values(revoked_at=now)
        async with self._transaction(write=True) as conn:
            return int((await conn.execute(stmt)).rowcount)

    # -- session records -----------------------------------------------------------------------------------

    async def add_session_record(self, record: SessionRecord, *, now: float) -> None:
        await self._write((_PURGE_SESSION_RECORDS, {"now": now}), (_ADD_SESSION_RECORD, _session_record_row(record)))

    async def session_records_of(self, user_id: str, now: float) -> list[SessionRecord]:
        table = session_records
        stmt = (
            select(table)
            .where(table.c.user_id == user_id, table.c.revoked_at.is_(None), table.c.expires_at > now)
            .order_by(table.c.created_at, table.c.id)
        )
        return [_session_record(row) for row in await self._read(stmt)]

    async def end_session_record(self, sid: str, now: float) -> bool:
        return len(await self._revoke_records(now, session_records.c.sid == sid)) == 1

    async def revoke_session_record(self, user_id: str, record_id: str, now: float) -> SessionRecord | None:
        table = session_records
        revoked = await self._revoke_records(now, table.c.user_id == user_id, table.c.id == record_id)
        return revoked[0] if revoked else None

    async def revoke_session_records(self, user_id: str, now: float, *, keep_sid: str | None) -> list[SessionRecord]:
        table = session_records
        others = () if keep_sid is None else (table.c.sid != keep_sid,)
        return await self._revoke_records(now, table.c.user_id == user_id, *others)

    async def _revoke_records(self, now: float, *conditions: Any) -> list[SessionRecord]:
        # One conditional UPDATE ... RETURNING: of two replicas revoking at once, each record is returned to one.
        table = session_records
        still_active = (table.c.revoked_at.is_(None), table.c.expires_at > now)
        stmt = update(table).where(*conditions, *still_active).values(revoked_at=now).returning(*table.c)
        async with self._transaction(write=True) as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_session_record(row) for row in rows), key=lambda record: (record.created_at, record.id))


def _sqlite_engine(url: URL, echo: bool) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        # A missing directory would fail every connect; if mkdir fails, connects raise DependencyUnavailable.
        with contextlib.suppress(OSError):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_read_engine(url: URL, echo: bool) -> Engine | None:
    """A synchronous engine on the same SQLite file for reads run whole in a worker thread (None for an in-memory
    database, which another engine could not see)."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    engine = create_engine(
        url.set(drivername="sqlite"),
        pool_size=SQLITE_READERS,
        max_overflow=0,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _refused_by_server(exc: BaseException) -> bool:
    """The server answered the statement with an error that leaves the connection as it was (a constraint, say):
    an asyncpg error with an SQLSTATE that is not the server failing to serve (``_is_unavailable``)."""
    return (
        isinstance(exc, Exception)
        and type(exc).__module__.startswith("asyncpg.")
        and isinstance(getattr(exc, "sqlstate", None), str)
        and not _is_unavailable(exc)
    )


async def _run_on_asyncpg(driver: Any, prepared: Prepared, params: Params) -> int:
    """One statement of a write on asyncpg: the rows it matched (for a list of parameters, one per item)."""
    if isinstance(params, Mapping):
        status: str = await driver.execute(prepared.postgresql, *prepared.arguments(params))
        return int(status.rsplit(" ", 1)[-1])  # "UPDATE 1", "DELETE 3", "INSERT 0 1"
    assert prepared.postgresql.startswith("INSERT"), "a list of parameters is for rows to insert, one row each"
    await driver.executemany(prepared.postgresql, [prepared.arguments(item) for item in params])
    return len(params)


def _sqlite_connect(database: str, timeout: float) -> sqlite3.Connection:
    """A plain connection to the file, as the engines configure theirs (the lane's)."""
    connection = sqlite3.connect(database, timeout=timeout, isolation_level=None, check_same_thread=False)
    _sqlite_on_connect(connection, None)
    return connection


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver so _sqlite_on_begin decides how each transaction begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            # Switching a file to WAL needs an exclusive lock and SQLite reports "locked" at once, without the busy
            # timeout, when another connection is switching it too. WAL mode is stored in the file, so the winner's
            # switch holds for every connection, and a later connect retries; rollback-journal mode is still correct.
            log.debug("could not switch SQLite to WAL journal mode yet", exc_info=True)
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY if another connection
    # wrote in between; BEGIN IMMEDIATE takes the write lock up front and waits (busy timeout) instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.Error):  # the lane's, raised by the driver itself
        return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError
    if type(exc).__module__.startswith("asyncpg."):  # _driver's: a server that cannot serve (a connection lost is
        sqlstate = getattr(exc, "sqlstate", None)  # told by _driver, which sees the connection)
        return isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    if type(exc.orig) is sqlite3.DatabaseError:  # "file is not a database": damaged or not SQLite at all
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _enrollment(row: Row[Any]) -> Enrollment:
    return Enrollment(
        user_id=row.user_id,
        secret_ciphertext=bytes(row.secret_ciphertext),
        key_id=row.key_id,
        params=TotpParams(algorithm=TotpAlgorithm(row.algorithm), digits=row.digits, period=row.period),
        status=EnrollmentStatus(row.status),
        created_at=row.created_at,
        activated_at=row.activated_at,
    )


def _credential_row(credential: WebAuthnCredential) -> dict[str, Any]:
    return {
        "credential_id": credential.credential_id,
        "user_id": credential.user_id,
        "user_handle": credential.user_handle,
        "public_key": credential.public_key,
        "sign_count": credential.sign_count,
        "transports": ",".join(credential.transports),
        "backup_eligible": credential.backup_eligible,
        "backup_state": credential.backup_state,
        "aaguid": credential.aaguid,
        "name": credential.name,
        "created_at": credential.created_at,
        "last_used_at": credential.last_used_at,
    }


def _credential(row: Row[Any]) -> WebAuthnCredential:
    return WebAuthnCredential(
        credential_id=bytes(row.credential_id),
        user_id=row.user_id,
        user_handle=bytes(row.user_handle),
        public_key=bytes(row.public_key),
        sign_count=int(row.sign_count),
        transports=tuple(t for t in row.transports.split(",") if t),
        backup_eligible=bool(row.backup_eligible),
        backup_state=bool(row.backup_state),
        aaguid=row.aaguid,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


def _grant_row(grant: DeviceGrant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "token_hash": grant.token_hash,
        "user_id": grant.user_id,
        "factor": grant.factor,
        "label": grant.label,
        "created_at": grant.created_at,
        "expires_at": grant.expires_at,
        "last_used_at": grant.last_used_at,
        "revoked_at": grant.revoked_at,
    }


def _grant(row: Row[Any]) -> DeviceGrant:
    return DeviceGrant(
        id=row.id,
        user_id=row.user_id,
        factor=row.factor,
        token_hash=row.token_hash,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _session_record_row(record: SessionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "sid": record.sid,
        "user_id": record.user_id,
        "methods": " ".join(record.methods),
        "label": record.label,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
    }


def _session_record(row: Row[Any]) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        sid=row.sid,
        user_id=row.user_id,
        methods=tuple(row.methods.split()),
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _audit_event(row: Row[Any]) -> AuditEvent:
    detail = json.loads(row.detail)
    return AuditEvent(
        at=row.at,
        event=row.event,
        result=row.result,
        user_id=row.user_id,
        client_ip=row.client_ip,
        detail={str(key): str(value) for key, value in detail.items()},
    )
