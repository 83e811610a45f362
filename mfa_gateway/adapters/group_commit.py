"""Group commit: what callers ask to have written while one commit is under way goes together in the next one.

A database commits one transaction at a time, and a commit costs far more than the rows in it: a burst of writes
costs a commit per batch rather than per write. Each caller is answered with its own outcome once its batch is
committed, and an item whose caller was cancelled meanwhile is committed all the same (the caller may have been a
client that went away; what it asked for still happened).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Commit = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]
"""Commits a batch: each item's outcome, in order (an exception for an item that failed alone). Raising fails the
whole batch with that exception."""


class GroupCommit(Generic[T, R]):
    def __init__(self, commit: Commit[T, R], *, limit: int, name: str) -> None:
        self._commit = commit
        self._limit = limit
        self._name = name
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s outcome once the batch holding it is committed (its exception raised)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_waiting(), name=self._name)
        return await asyncio.shield(done)

    async def flush(self) -> None:
        """Return once everything submitted so far is committed (or failed)."""
        while self._committing is not None and not self._committing.done():
            await asyncio.shield(self._committing)

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._limit]
            del self._waiting[: self._limit]
            try:
                outcomes: Sequence[R | BaseException] = await self._commit([item for item, _ in batch])
            except asyncio.CancelledError:  # the loop is going away: nobody will commit these
                for _, done in batch:
                    done.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the whole batch failed: each caller hears why
                outcomes = [exc] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
