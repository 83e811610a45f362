"""The hashing pool's threads, and the lane threads argon2 starts from them, run at the priority
``mfa_gateway.runtime.hashing`` names: read back from the kernel, per thread (Linux's /proc and per-thread nice
values, as on every platform the gateway ships for)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

from mfa_gateway.core.hashing import Argon2Params
from mfa_gateway.runtime.hashing import HASHING_NICE, HashingPool

LANES = Argon2Params(time_cost=3, memory_kib=32768, parallelism=4)  # lane threads live long enough to be seen
TASKS = Path("/proc/self/task")


def _nice_of(tid: int) -> int:
    """A thread's nice value as the kernel reports it (field 19 of /proc/self/task/TID/stat)."""
    stat = (TASKS / str(tid) / "stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def _tids() -> set[int]:
    return {int(task.name) for task in TASKS.iterdir()}


def _pool_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("argon2")]


async def test_hashing_threads_run_at_nice_19_and_the_loop_thread_is_untouched() -> None:
    """Each hashing thread runs SCHED_OTHER at nice HASHING_NICE (19, the lowest normal priority; not SCHED_IDLE,
    which starves sign-ins on a saturated core), and the event loop's thread keeps its own priority."""
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = HashingPool(Argon2Params(time_cost=1, memory_kib=1024, parallelism=1), max_concurrency=2)
    try:
        await asyncio.gather(pool.hash("a"), pool.hash("b"))
        threads = _pool_threads()
        assert threads
        for thread in threads:
            assert thread.native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == HASHING_NICE == 19
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
    finally:
        pool.close()


async def test_argon2_lane_threads_inherit_the_hashing_priority() -> None:
    """argon2 computes its lanes in threads of its own, created by the hashing thread for every segment: they
    inherit its nice value, so the whole hash runs at HASHING_NICE."""
    before = _tids()
    pool = HashingPool(LANES, max_concurrency=1)
    try:
        await pool.hash("warm-up")  # the pool's own thread exists from here on
        known = before | {t.native_id for t in _pool_threads() if t.native_id is not None}
        hashing = asyncio.ensure_future(pool.hash("lanes"))
        lanes: dict[int, int] = {}
        while not hashing.done():
            for tid in _tids() - known:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # the lane ended meanwhile
                    lanes[tid] = _nice_of(tid)
            await asyncio.sleep(0.0005)  # yields the core: on one core a busy poll at nice 0 would starve the lanes
        await hashing
    finally:
        pool.close()
    assert lanes, "no lane thread seen while the hash ran"
    assert set(lanes.values()) == {HASHING_NICE}
