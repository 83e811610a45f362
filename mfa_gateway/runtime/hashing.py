"""Argon2id off the event loop, with bounded concurrency so a burst of logins cannot starve the process.

The hashing threads run at nice 19, the lowest normal scheduling priority (per thread on Linux). argon2 computes its
lanes in threads it creates for every segment of every pass, and those inherit it: when hashing shares a core with
the event loop's thread, the loop, which answers every other request, gets the core back sooner than at nice 10
(S6 in docs/performance.md). Not SCHED_IDLE, although the loop's lag is lower still with it: its weight (3, against
the loop's 1024) left sign-ins 0.1/s on a core saturated by proxying, where nice 19 (weight 15) still gave 0.5/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from mfa_gateway.core.hashing import Argon2Params, Hasher
from mfa_gateway.ports import PasswordHashing

HASHING_NICE = 19
"""The hashing threads' nice value: a nice-0 thread weighs 1024 against a nice-19 one's 15, so hashing slows down
on a busy core but never stops."""


def _lower_priority() -> None:
    """Runs in each new hashing thread: its nice value raised to HASHING_NICE (raising one's own is always allowed;
    the process's and the loop thread's are untouched)."""
    with contextlib.suppress(OSError, AttributeError):  # a platform without per-thread priorities keeps its default
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICE)


class HashingPool(PasswordHashing):
    def __init__(self, params: Argon2Params, max_concurrency: int) -> None:
        self._hasher = Hasher(params)
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._slots = asyncio.Semaphore(max_concurrency)

    async def hash(self, value: str) -> str:
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._hasher.hash, value)

    async def matches(self, stored_hash: str | None, value: str) -> bool:
        """Compare; a None hash (unknown user) costs the same time and never matches."""
        target = stored_hash if stored_hash is not None else self._hasher.dummy_hash
        async with self._slots:
            ok = await asyncio.get_running_loop().run_in_executor(self._executor, self._hasher.matches, target, value)
        return ok and stored_hash is not None

    @property
    def dummy_hash(self) -> str:
        """What an unknown user's attempt is verified against: a hash made with the current settings."""
        return self._hasher.dummy_hash

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.needs_rehash(stored_hash)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
