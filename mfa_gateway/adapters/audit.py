"""Audit sinks: JSON lines to a stream or file, the store, or both.

An event carries time, event name, user, client IP, result and non-secret detail; never a code, secret or password
(the service never puts one in, and ``detail`` values are short enumerations such as the method used).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mfa_gateway.adapters.group_commit import GroupCommit
from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.model import AuditEvent
from mfa_gateway.ports import AuditSink, EnrollmentStore

AUDIT_BATCH = 500
"""The most events one audit transaction holds."""


def event_json(event: AuditEvent) -> str:
    record = {
        "time": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": event.event,
        "user": event.user_id,
        "client_ip": event.client_ip,
        "result": event.result,
        **({"detail": dict(event.detail)} if event.detail else {}),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class JsonLinesAudit(AuditSink):
    """One JSON line per event; each line passes ``redact`` (the log redaction step) on its way out."""

    def __init__(self, stream: TextIO, redact: Callable[[str], str]) -> None:
        self._stream = stream
        self._redact = redact
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, redact: Callable[[str], str]) -> JsonLinesAudit:
        if path == "-":
            return cls(sys.stderr, redact)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return cls(target.open("a", encoding="utf-8", buffering=1), redact)

    @staticmethod
    def problem(path: str) -> str | None:
        """Why ``open(path)`` would fail, found without creating anything (for check-config); None if it would not.
        Permission bits are judged by ``os.access``: a process with more rights (root) is told less."""
        if path == "-":
            return None
        target = Path(path)
        if target.exists():
            return None if target.is_file() and os.access(target, os.W_OK) else "not a writable file"
        folder = target.parent
        while not folder.exists():  # open() would create the missing folders from the nearest existing one
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a folder"
        return None if os.access(folder, os.W_OK | os.X_OK) else f"cannot create files in {folder}"

    async def emit(self, event: AuditEvent) -> None:
        line = self._redact(event_json(event))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._stream is not sys.stderr:
            self._stream.close()


class StoreAudit(AuditSink):
    """Keeps events in the database by group commit (``GroupCommit``): the events emitted while one write is under
    way go together in the next transaction, and each ``emit`` returns once its event is committed. One event the
    database refuses fails only its own emitter; an unreachable database must not turn a success into a failure."""

    def __init__(self, store: EnrollmentStore) -> None:
        self._store = store
        self._group: GroupCommit[AuditEvent, None] = GroupCommit(
            self._commit_batch, limit=AUDIT_BATCH, name="audit-group-commit"
        )

    async def emit(self, event: AuditEvent) -> None:
        await self._group.submit(event)

    async def flush(self) -> None:
        await self._group.flush()

    async def _commit_batch(self, events: list[AuditEvent]) -> list[Exception | None]:
        failure = await self._commit(events)
        if failure is None or len(events) == 1:
            return [failure] * len(events)
        return [await self._commit([event]) for event in events]  # one bad event must not fail the others

    async def _commit(self, events: list[AuditEvent]) -> Exception | None:
        """None once committed (or the database is unreachable: dropped, as a success must not fail); else the
        error, for the emitter."""
        try:
            await self._store.record_audit(events)
        except DependencyUnavailable:
            return None
        except Exception as exc:  # noqa: BLE001 - handed to the event's emitter, as a write of its own would
            return exc
        return None


class FanoutAudit(AuditSink):
    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self._sinks = tuple(sinks)

    async def emit(self, event: AuditEvent) -> None:
        for sink in self._sinks:
            await sink.emit(event)

    async def flush(self) -> None:
        for sink in self._sinks:
            await sink.flush()


class MemoryAudit(AuditSink):
    """Collects events in a list (tests, and `users show` style inspection)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def emit(self, event: AuditEvent) -> None:
        self.events.append(event)
