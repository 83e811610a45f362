"""The hot statements of a SQLite file on plain ``sqlite3`` connections: the reads and writes of every sign-in.

Through SQLAlchemy and a worker thread, one point read cost about 600 us of CPU and one write about 1 ms (statement
construction, cache keys, result handling, and a hand-off to a thread and back, about 100 us each). Here a statement
is compiled once (``prepared.Prepared``), so what is left is SQLite's own work:

- **Reads run on the event loop's thread**, on a connection of their own: a primary-key read costs about 10 us,
  a tenth of a hand-off. In WAL mode a reader does not wait for a writer; the connection has no busy timeout, so a
  read that would wait (a rollback-journal file being written, a WAL being recovered or reset) is handed to a
  thread instead of stalling the loop. What remains on the loop is SQLite's own work and, for a page the
  operating system does not hold in memory, one disk read.
- **Writes go by group commit**: the writes asked for while a transaction is under way commit together in the next
  one, in one hand-off to a thread, each caller's statements inside a savepoint of their own (one caller's
  constraint error rolls back its own statements only). Each caller is answered once the transaction that holds
  its statements is committed, so a write is as durable as before; the commit (and its fsync) stays off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from mfa_gateway.adapters.group_commit import GroupCommit
from mfa_gateway.adapters.sql.prepared import Params, Prepared, Write, named_row
from mfa_gateway.core.errors import DependencyUnavailable

GROUP_COMMIT_LIMIT = 500
"""The most callers' writes one transaction holds."""


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
        self._writing = threading.Lock()  # one transaction at a time on the writer connection, whatever happens
        self._group: GroupCommit[Sequence[Write], list[int]] = GroupCommit(
            self._commit_batch, limit=GROUP_COMMIT_LIMIT, name="sqlite-group-commit"
        )
        self._closed = False

    async def read(self, prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
        """The rows of ``prepared`` (attribute access by column name), read on the loop, or in a thread when the
        file is locked against readers."""
        self._refuse_if_closed()
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
        self._refuse_if_closed()
        return await self._group.submit(writes)

    async def _commit_batch(self, units: list[Sequence[Write]]) -> list[list[int] | BaseException]:
        loop = asyncio.get_running_loop()
        async with self._writer_turn():
            handed = loop.run_in_executor(self._threads, self._commit, units)
            try:
                return await asyncio.shield(handed)
            except asyncio.CancelledError:
                # The transaction runs on in its thread: the writer turn is held until it ends.
                await asyncio.wait([handed])
                raise

    def _commit(self, units: list[Sequence[Write]]) -> list[list[int] | BaseException]:
        """In a thread: one transaction holding every unit, each in a savepoint; per unit its row counts or error.
        A connection a failure left in doubt is closed, and the next transaction opens another."""
        with self._writing:
            if self._writer is None:
                self._writer = self._connect(self._busy_timeout)
            connection, outcomes = self._writer, list[list[int] | BaseException]()
            try:
                connection.execute("BEGIN IMMEDIATE")
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
                self._writer = None
                with contextlib.suppress(sqlite3.Error):
                    connection.close()  # closing rolls back whatever is still open
                raise
            return outcomes

    async def flush(self) -> None:
        """Return once every write asked for so far is committed (or failed)."""
        await self._group.flush()

    def close(self) -> None:
        """Close the lane's connections; reads and writes asked for afterwards are refused as unavailable (the
        store's threads are shut down before, so no write is under way)."""
        self._closed = True
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise DependencyUnavailable("database")


def _run(connection: sqlite3.Connection, prepared: Prepared, params: Params) -> int:
    if isinstance(params, Mapping):
        return connection.execute(prepared.sqlite, params).rowcount
    return connection.executemany(prepared.sqlite, params).rowcount


def _named_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Any:
    return named_row((column[0] for column in cursor.description), row)
