"""Argon2id off the event loop, with bounded concurrency so a burst of logins cannot starve the process.

The hashing threads run at a lower scheduling priority than the event loop's thread (a higher nice value, per
thread on Linux): when they compete for a core, the loop, which answers every other request, goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from mfa_gateway.core.hashing import Argon2Params, Hasher
from mfa_gateway.ports import PasswordHashing

HASHING_NICE = 10
"""How much lower the hashing threads' priority is: CFS gives a nice-0 thread about 10x the share of a nice-10 one."""


def _lower_priority() -> None:
    """Runs in each new hashing thread: its nice value HASHING_NICE above the one it inherited from the loop's thread
    (raising one's own nice is always allowed; the process's and the loop's are untouched)."""
    with contextlib.suppress(OSError, AttributeError):  # a platform without per-thread priorities keeps its default
        thread = threading.get_native_id()
        inherited = os.getpriority(os.PRIO_PROCESS, thread)  # the creating thread's, i.e. the loop's
        os.setpriority(os.PRIO_PROCESS, thread, min(inherited + HASHING_NICE, 19))


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
