"""Shared state kept in this process: for a single replica, for development, and as the contract's reference.

asyncio runs one coroutine at a time and no method here awaits, so every method is atomic without a lock.
Expiry is judged by the injected ``now``; expired entries are purged opportunistically (a sweep at most every
``PURGE_EVERY`` seconds of injected time) so the tables cannot grow without bound.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mfa_gateway.core.model import (
    ATTEMPTS_BUSY,
    IN_FLIGHT_STALE,
    AttemptLimits,
    CodeJudgement,
    Revocation,
    RevocationKind,
    StepClaim,
)
from mfa_gateway.ports import SharedState

ATTEMPT_RETENTION = 30 * 24 * 3600.0
"""Counters are forgotten this long after the last failure or the end of the lock; hard locks never are."""

PURGE_EVERY = 60.0

_MAX_DOUBLINGS = 62  # 2**62 dwarfs any max_lockout, and keeps the float arithmetic finite

_V = TypeVar("_V")


@dataclass(slots=True)
class _Attempts:
    failures: int = 0  # in the current window
    window_start: float = -math.inf
    lockouts: int = 0
    locked_until: float = 0.0
    consecutive: int = 0
    hard_locked: bool = False
    expires: float = math.inf
    in_flight: int = 0  # admitted, not yet finished
    admitted_at: float = -math.inf  # when the attempts now in flight began (the first of them)

    def remaining(self, now: float) -> float:
        if self.hard_locked:
            return math.inf
        return max(self.locked_until - now, 0.0)


def _backoff(limits: AttemptLimits, lockouts: int) -> float:
    """Length of the ``lockouts``-th lockout: ``lockout`` doubling each time, capped at ``max_lockout``."""
    return min(limits.lockout * 2.0 ** min(lockouts - 1, _MAX_DOUBLINGS), limits.max_lockout)


def _record(entry: _Attempts, limits: AttemptLimits, now: float) -> None:
    if now - entry.window_start >= limits.window:
        entry.failures, entry.window_start = 0, now
    entry.failures += 1
    entry.consecutive += 1
    if limits.hard_lock_after > 0 and entry.consecutive >= limits.hard_lock_after:
        entry.hard_locked = True
    elif entry.failures >= limits.max_failures:
        entry.lockouts += 1
        # max(): a failure never shortens a lock already in force (e.g. after the limits were lowered).
        entry.locked_until = max(entry.locked_until, now + _backoff(limits, entry.lockouts))
        entry.failures, entry.window_start = 0, now
    entry.expires = math.inf if entry.hard_locked else max(entry.locked_until, now) + ATTEMPT_RETENTION


def _in_flight(entry: _Attempts, now: float) -> int:
    return entry.in_flight if now - entry.admitted_at < IN_FLIGHT_STALE else 0


def _failures(entry: _Attempts, limits: AttemptLimits, now: float) -> int:
    return entry.failures if now - entry.window_start < limits.window else 0


def _live(table: dict[str, tuple[float, _V]], key: str, now: float) -> _V | None:
    """The value under ``key`` unless it has expired by ``now`` (an expired one is dropped)."""
    item = table.get(key)
    if item is None:
        return None
    if now >= item[0]:
        del table[key]
        return None
    return item[1]


def _drop_expired(table: dict[str, tuple[float, _V]], now: float) -> None:
    for key in [k for k, (expires, _) in table.items() if now >= expires]:
        del table[key]


class MemorySharedState(SharedState):
    """``SharedState`` in one process's memory: correct only when a single replica serves all traffic."""

    def __init__(self) -> None:
        self._attempts: dict[str, _Attempts] = {}
        self._totp_steps: dict[str, tuple[float, int]] = {}
        self._once: dict[str, float] = {}  # key -> expiry
        self._challenges: dict[str, tuple[float, bytes]] = {}
        self._ceremonies: dict[str, tuple[float, bytes]] = {}
        self._next_purge = -math.inf
        self._revocations: dict[tuple[RevocationKind, str], Revocation] = {}
        self._feeds: set[asyncio.Queue[Revocation]] = set()

    def size(self) -> int:
        """Number of entries held, expired or not (for tests and metrics)."""
        held = len(self._attempts) + len(self._totp_steps) + len(self._once) + len(self._challenges)
        return held + len(self._ceremonies)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY
        for key in [k for k, entry in self._attempts.items() if now >= entry.expires]:
            del self._attempts[key]
        for key in [k for k, expires in self._once.items() if now >= expires]:
            del self._once[key]
        _drop_expired(self._totp_steps, now)
        _drop_expired(self._challenges, now)
        _drop_expired(self._ceremonies, now)

    def _attempts_at(self, key: str, now: float) -> _Attempts | None:
        entry = self._attempts.get(key)
        if entry is not None and now >= entry.expires:
            del self._attempts[key]
            return None
        return entry

    async def lock_remaining(self, keys: Sequence[str], now: float) -> float:
        self._purge(now)
        entries = (self._attempts_at(key, now) for key in keys)
        return max((entry.remaining(now) for entry in entries if entry is not None), default=0.0)

    def _refusal(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> float:
        """The longest lock in force on the keys, else ``ATTEMPTS_BUSY`` while the failures counted plus the attempts
        in flight on a key reach its limit, else 0.0."""
        self._purge(now)
        entries = [(self._attempts_at(key, now), limits) for key, limits in keyed_limits]
        locked = max((entry.remaining(now) for entry, _ in entries if entry is not None), default=0.0)
        if locked > 0:
            return locked
        for entry, limits in entries:
            if entry is not None and _failures(entry, limits, now) + _in_flight(entry, now) >= limits.max_failures:
                return ATTEMPTS_BUSY
        return 0.0

    async def admit_attempt(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> float:
        refused = self._refusal(keyed_limits, now)
        if refused:
            return refused
        for key, _ in keyed_limits:
            entry = self._attempts.get(key)
            if entry is None:
                entry = self._attempts[key] = _Attempts(expires=now + IN_FLIGHT_STALE)
            in_flight = _in_flight(entry, now)
            if in_flight == 0:
                entry.admitted_at = now  # staleness counts from the first attempt of a busy spell
            entry.in_flight = in_flight + 1
        return 0.0

    async def finish_attempt(
        self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float, *, failed: bool, forget: Sequence[str] = ()
    ) -> None:
        for key, limits in keyed_limits:
            if key in forget:
                self._attempts.pop(key, None)
                continue
            entry = self._count_failure(key, limits, now) if failed else self._attempts_at(key, now)
            if entry is not None:
                entry.in_flight = max(entry.in_flight - 1, 0)

    def _count_failure(self, key: str, limits: AttemptLimits, now: float) -> _Attempts:
        entry = self._attempts_at(key, now)
        if entry is None:
            entry = self._attempts[key] = _Attempts()
        _record(entry, limits, now)
        return entry

    async def record_failure(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> None:
        for key, limits in keyed_limits:
            self._count_failure(key, limits, now)

    async def judge_totp_attempt(
        self,
        keyed_limits: Sequence[tuple[str, AttemptLimits]],
        now: float,
        *,
        claim: StepClaim | None,
        forget: Sequence[str] = (),
    ) -> CodeJudgement:
        refused = self._refusal(keyed_limits, now)
        if refused:
            return CodeJudgement(refused=refused)
        if claim is not None and self._claim_step(claim, now):
            for key in forget:
                self._attempts.pop(key, None)
            return CodeJudgement(accepted=True)
        for key, limits in keyed_limits:
            self._count_failure(key, limits, now)
        return CodeJudgement()

    async def clear_failures(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._attempts.pop(key, None)

    def _claim_step(self, claim: StepClaim, now: float) -> bool:
        last = _live(self._totp_steps, claim.user_id, now)
        if last is not None and claim.step <= last:
            return False
        self._totp_steps[claim.user_id] = (now + claim.ttl, claim.step)
        return True

    async def claim_once(self, key: str, now: float, ttl: float) -> bool:
        self._purge(now)
        expires = self._once.get(key)
        if expires is not None and now < expires:
            return False
        self._once[key] = now + ttl
        return True

    async def put_challenge(self, challenge_id: str, payload: bytes, now: float, ttl: float) -> None:
        self._purge(now)
        self._challenges[challenge_id] = (now + ttl, payload)

    async def get_challenge(self, challenge_id: str, now: float) -> bytes | None:
        self._purge(now)
        return _live(self._challenges, challenge_id, now)

    async def take_challenge(self, challenge_id: str, now: float) -> bytes | None:
        self._purge(now)
        payload = _live(self._challenges, challenge_id, now)
        self._challenges.pop(challenge_id, None)
        return payload

    async def count_challenges(self, now: float) -> int:
        self._purge(now)
        return sum(1 for expires, _ in self._challenges.values() if now < expires)

    async def put_ceremony(self, ceremony_id: str, payload: bytes, now: float, ttl: float) -> None:
        self._purge(now)
        self._ceremonies[ceremony_id] = (now + ttl, payload)

    async def take_ceremony(self, ceremony_id: str, now: float) -> bytes | None:
        self._purge(now)
        payload = _live(self._ceremonies, ceremony_id, now)
        self._ceremonies.pop(ceremony_id, None)
        return payload

    async def revoke(self, revocation: Revocation) -> None:
        self._revocations[(revocation.kind, revocation.subject)] = revocation
        for queue in self._feeds:
            queue.put_nowait(revocation)

    async def revocations(self, now: float) -> list[Revocation]:
        for key in [k for k, r in self._revocations.items() if now >= r.until]:
            del self._revocations[key]
        return list(self._revocations.values())

    async def revocation_feed(self) -> AsyncIterator[Revocation]:
        queue: asyncio.Queue[Revocation] = asyncio.Queue()
        self._feeds.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._feeds.discard(queue)
