"""The hot statements of a SQLite file on plain ``sqlite3`` connections: the reads and writes of every sign-in.

Through SQLAlchemy and a worker thread, one point read cost about 600 us of CPU and one write about 1 ms (statement
construction, cache keys, result handling, and a hand-off to a thread and back, about 100 us each). Here a statement
is compiled once (``Prepared``), so what is left is SQLite's own work:

- **Reads run on the event loop's thread**, on a connection of their own: a primary-key read costs about 10 us,
  a tenth of a hand-off. In WAL mode a reader never waits for a writer; the connection has no busy timeout, so a
  read that would wait (a rollback-journal file being written, a WAL being reset) is handed to a thread instead of
  stalling the loop.
- **Writes go by group commit**: the writes asked for while a transaction is under way commit together in the next
  one, in one hand-off to a thread, each caller's statements inside a savepoint of their own (one caller's
  constraint error rolls back its own statements only). Each caller is answered once the transaction that holds
  its statements is committed, so a write is as durable as before; the commit (and its fsync) stays off the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.expression import ClauseElement

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""A statement's named parameters; a list of them runs it once per item (executemany)."""

GROUP_COMMIT_LIMIT = 500
"""The most callers' writes one transaction holds."""

_NAMED = sqlite.dialect(paramstyle="named")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once with named ``bindparam``s: SQLAlchemy runs ``statement`` (PostgreSQL, or SQLite without
    a lane), the lane runs ``sqlite`` (its SQLite text, compiled once). ``columns`` names the columns an INSERT
    sets, which a bare ``insert(table)`` needs to compile."""

    statement: Executable
    sqlite: str

    @classmethod
    def of(cls, statement: Executable, columns: Sequence[str] | None = None) -> Prepared:
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=_NAMED, column_keys=list(columns) if columns is not None else None)
        return cls(statement, str(compiled))


Write = tuple[Prepared, Params]
"""One statement of a write and its parameters."""


class SqliteLane:
    """Prepared reads on the loop's thread and group-committed writes for one SQLite file (module docstring).

    ``connect(timeout)`` opens a connection to the file as the store configures them (WAL, foreign keys, no driver
    transactions); ``threads`` runs what must leave the loop; ``writer_turn`` is the store's one-writer-at-a-time
    turn, which the lane's transactions take like every other write of this process."""

    def __init__(
        self,
        connect: Callable[[float], sqlite3.Connection],
        threads: Executor,
        writer_turn: Callable[[], contextlib.AbstractAsyncContextManager[None]],
        busy_timeout: float,
    ) -> None:
        self._connect = connect
        self._threads = threads
        self._writer_turn = writer_turn
        self._busy_timeout = busy_timeout
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._waiting: list[tuple[Sequence[Write], asyncio.Future[list[int]]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def read(self, prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
        """The rows of ``prepared`` (attribute access by column name), read on the loop, or in a thread when the
        file is locked against readers."""
        if self._reader is None:
            self._reader = self._connect(0.0)
            self._reader.row_factory = _named_row
            self._reader.execute("PRAGMA query_only=ON")
        try:
            return self._reader.execute(prepared.sqlite, params).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._read_waiting, prepared.sqlite, params)

    def _read_waiting(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """A read that may wait for the file's lock (busy timeout), on a connection of its own, in a thread."""
        connection = self._connect(self._busy_timeout)
        try:
            connection.row_factory = _named_row
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    async def write(self, *writes: Write) -> list[int]:
        """Run ``writes`` in one transaction (with other callers' writes, each in a savepoint): the rows each
        matched, once committed. A caller cancelled meanwhile still has its writes committed."""
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((writes, done))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_waiting(), name="sqlite-group-commit")
        return await asyncio.shield(done)

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:GROUP_COMMIT_LIMIT]
            del self._waiting[:GROUP_COMMIT_LIMIT]
            units = [writes for writes, _ in batch]
            loop = asyncio.get_running_loop()
            try:
                async with self._writer_turn():
                    outcomes = await loop.run_in_executor(self._threads, self._commit, units)
            except asyncio.CancelledError:  # the loop is going away: nobody will commit these
                for _, done in batch:
                    done.cancel()
                raise
            except BaseException as exc:  # noqa: BLE001 - the whole transaction failed: each caller hears why
                outcomes = [exc] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    def _commit(self, units: list[Sequence[Write]]) -> list[list[int] | BaseException]:
        """In a thread: one transaction holding every unit, each in a savepoint; per unit its row counts or error."""
        if self._writer is None:
            self._writer = self._connect(self._busy_timeout)
        connection, outcomes = self._writer, list[list[int] | BaseException]()
        connection.execute("BEGIN IMMEDIATE")
        try:
            for unit in units:
                connection.execute("SAVEPOINT unit")
                try:
                    outcomes.append([_run(connection, prepared, params) for prepared, params in unit])
                except sqlite3.Error as exc:
                    if not connection.in_transaction:  # SQLite rolled the whole transaction back (disk full...)
                        raise
                    connection.execute("ROLLBACK TO unit")
                    outcomes.append(exc)
                connection.execute("RELEASE unit")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

    async def flush(self) -> None:
        """Return once every write asked for so far is committed (or failed)."""
        while self._committing is not None and not self._committing.done():
            await asyncio.shield(self._committing)

    def close(self) -> None:
        """Close the lane's connections (the store's threads are shut down before, so no write is under way)."""
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None


def _run(connection: sqlite3.Connection, prepared: Prepared, params: Params) -> int:
    if isinstance(params, Mapping):
        return connection.execute(prepared.sqlite, params).rowcount
    return connection.executemany(prepared.sqlite, params).rowcount


def _named_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Any:
    return _row_class(tuple(column[0] for column in cursor.description))(*row)


@functools.cache
def _row_class(columns: tuple[str, ...]) -> type[tuple[Any, ...]]:
    return collections.namedtuple("Row", columns)
