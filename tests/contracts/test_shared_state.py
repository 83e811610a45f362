"""Contract of the ``SharedState`` port, run against every implementation (in memory and on Redis).

Time is injected through ``now``; nothing sleeps. Each Redis test works under its own key prefix.
"""

from __future__ import annotations

import asyncio
import math
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio

from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.model import ATTEMPTS_BUSY, IN_FLIGHT_STALE, AttemptLimits, StepClaim
from mfa_gateway.ports import SharedState
from tests.helpers.servers import RedisServer, free_port

T0 = 1_700_000_000.0
DAY = 24 * 3600.0
LIMITS = AttemptLimits(max_failures=3, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=0)


@pytest.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_state(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisSharedState]:
    impl = RedisSharedState(redis_server.url, prefix=prefix)
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture
async def other_replica(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisSharedState]:
    """A second replica on the same Redis and prefix, built from its own client."""
    impl = RedisSharedState.from_client(redis.asyncio.Redis.from_url(redis_server.url), prefix=prefix)
    try:
        yield impl
    finally:
        await impl.close()


async def fail(
    state: SharedState,
    key: str,
    *,
    times: int,
    start: float,
    every: float = 1.0,
    limits: AttemptLimits = LIMITS,
) -> list[float]:
    """``times`` failed attempts of one key, ``every`` seconds apart; the lock in force after each."""
    return [await counted(state, [(key, limits)], start + i * every) for i in range(times)]


async def counted(state: SharedState, keyed: list[tuple[str, AttemptLimits]], now: float) -> float:
    """One attempt admitted (asserted) and failed, then the longest lock now in force on its keys."""
    assert await state.admit_attempt(keyed, now) == 0.0, "the attempt was refused: a key is locked"
    await state.finish_attempt(keyed, now, failed=True)
    return await state.lock_remaining([key for key, _ in keyed], now)


async def claim(state: SharedState, user_id: str, step: int, now: float, ttl: float) -> bool:
    """A correct code's step claimed on no attempt keys: True if it was newer than every step claimed before."""
    return (await state.judge_totp_attempt([], now, claim=StepClaim(user_id, step, ttl))).accepted


# --- attempt counters ---------------------------------------------------------------------------------------


async def test_max_failures_within_window_lock_the_key(state: SharedState) -> None:
    """The max_failures-th failure inside the window locks the key for ``lockout`` seconds from now."""
    assert await fail(state, "alice", times=3, start=T0) == [0.0, 0.0, 10.0]
    assert await state.lock_remaining(["alice"], T0 + 2) == 10.0
    assert await state.lock_remaining(["alice"], T0 + 7) == 5.0
    assert await state.lock_remaining(["alice"], T0 + 12) == 0.0
    assert await state.lock_remaining(["alice"], T0 + 500) == 0.0


async def test_failures_spread_beyond_the_window_never_lock(state: SharedState) -> None:
    """A failure ``window`` seconds or more after the window opened starts a new window and count."""
    assert await fail(state, "alice", times=10, start=T0, every=30.0) == [0.0] * 10
    assert await state.lock_remaining(["alice"], T0 + 300) == 0.0


async def test_each_lockout_doubles_up_to_max_lockout(state: SharedState) -> None:
    """Successive lockouts last lockout, 2*lockout, ... capped at max_lockout."""
    assert (await fail(state, "alice", times=3, start=T0))[-1] == 10.0  # locked until T0+12
    assert (await fail(state, "alice", times=3, start=T0 + 12))[-1] == 20.0  # until T0+34
    assert (await fail(state, "alice", times=3, start=T0 + 34))[-1] == 25.0  # 40, capped
    assert (await fail(state, "alice", times=3, start=T0 + 61))[-1] == 25.0


async def test_a_lockout_opens_a_fresh_window(state: SharedState) -> None:
    """After a lockout the count restarts in a window opened at the lockout, not at the first failure."""
    assert (await fail(state, "alice", times=3, start=T0, every=1.0))[-1] == 10.0  # window now opens at T0+2
    assert await counted(state, [("alice", LIMITS)], T0 + 12) == 0.0
    assert await counted(state, [("alice", LIMITS)], T0 + 50) == 0.0
    assert await counted(state, [("alice", LIMITS)], T0 + 61) == 20.0


async def test_attempts_while_locked_are_refused_uncounted(state: SharedState) -> None:
    """An attempt on a locked key is refused with the time left and counts nothing, so the lock is neither
    lengthened nor shortened and the window after it starts empty; a lock on any key refuses the attempt on all."""
    assert (await fail(state, "alice", times=3, start=T0))[-1] == 10.0  # until T0+12
    for now in (T0 + 5, T0 + 6, T0 + 7):
        assert await state.admit_attempt([("alice", LIMITS)], now) == T0 + 12 - now
    assert await fail(state, "alice", times=2, start=T0 + 12) == [0.0, 0.0]  # nothing was counted while locked

    assert (await fail(state, "10.0.0.1", times=3, start=T0))[-1] == 10.0
    assert await state.admit_attempt([("bob", LIMITS), ("10.0.0.1", LIMITS)], T0 + 4) == 8.0
    assert await fail(state, "bob", times=2, start=T0 + 5) == [0.0, 0.0]  # bob's refused attempt was not counted


async def test_a_lock_started_under_lowered_limits_never_shortens_one_in_force(state: SharedState) -> None:
    """Limits lowered while a lock from the old ones is still recorded: a new, shorter lockout keeps the longer."""
    long_limits = AttemptLimits(max_failures=3, window=60.0, lockout=1000.0, max_lockout=1000.0, hard_lock_after=0)
    short_limits = AttemptLimits(max_failures=1, window=60.0, lockout=5.0, max_lockout=5.0, hard_lock_after=0)
    assert (await fail(state, "bob", times=3, start=T0, limits=long_limits))[-1] == 1000.0  # until T0+1002
    assert await state.admit_attempt([("bob", short_limits)], T0 + 3) == 999.0
    assert await state.lock_remaining(["bob"], T0 + 3) == 999.0


async def test_concurrent_attempts_never_outrun_the_limit(state: SharedState) -> None:
    """Many attempts at once (one replica's tasks): only as many as could still fail before the limit are admitted;
    the rest wait ATTEMPTS_BUSY, with no lock made. Once those fail, the key is locked."""
    keyed = [("alice", LIMITS)]
    await fail(state, "alice", times=1, start=T0)
    results = await asyncio.gather(*(state.admit_attempt(keyed, T0 + 1) for _ in range(40)))
    assert results.count(0.0) == LIMITS.max_failures - 1
    assert all(r == ATTEMPTS_BUSY for r in results if r) and await state.lock_remaining(["alice"], T0 + 1) == 0.0
    for _ in range(LIMITS.max_failures - 1):
        await state.finish_attempt(keyed, T0 + 1, failed=True)
    assert await state.admit_attempt(keyed, T0 + 1) == 10.0


async def test_finished_attempts_release_their_reservation(state: SharedState) -> None:
    """Attempts that succeed or end unjudged count nothing and never lock; a success forgets its subject. An
    address with many correct attempts at once is never locked by them (only made to wait while they run)."""
    ip = [("alice", LIMITS), ("10.0.0.1", LIMITS)]
    for _ in range(5):
        assert await state.admit_attempt(ip, T0) == 0.0
        await state.finish_attempt(ip, T0, failed=False, forget=["alice"])
    assert await state.admit_attempt(ip, T0) == 0.0
    await state.finish_attempt(ip, T0, failed=False)  # unjudged
    assert await fail(state, "10.0.0.1", times=3, start=T0 + 1) == [0.0, 0.0, 10.0]  # a full count was left

    burst = [("bob", LIMITS), ("10.0.0.2", LIMITS)]
    admitted = await asyncio.gather(*(state.admit_attempt(burst, T0) for _ in range(10)))
    assert admitted.count(0.0) == 3
    for _ in range(3):
        await state.finish_attempt(burst, T0, failed=False, forget=["bob"])
    assert await state.lock_remaining(["bob", "10.0.0.2"], T0) == 0.0
    assert await state.admit_attempt(burst, T0) == 0.0  # the reservations are gone

    await state.finish_attempt([("never-seen", LIMITS)], T0, failed=False)
    assert await state.lock_remaining(["never-seen"], T0) == 0.0


async def test_reservations_left_by_a_dead_replica_go_stale(state: SharedState) -> None:
    """Attempts admitted and never finished (their replica died) hold the key only for IN_FLIGHT_STALE seconds from
    the first of them, even while other attempts keep arriving and finishing."""
    keyed = [("alice", LIMITS)]
    for _ in range(LIMITS.max_failures):
        assert await state.admit_attempt(keyed, T0) == 0.0
    assert await state.admit_attempt(keyed, T0 + IN_FLIGHT_STALE - 1) == ATTEMPTS_BUSY
    assert await state.admit_attempt(keyed, T0 + IN_FLIGHT_STALE) == 0.0

    busy = [("10.0.0.9", LIMITS)]
    await fail(state, "10.0.0.9", times=1, start=T0)  # a counter kept for the retention, not a fresh key
    assert await state.admit_attempt(busy, T0) == 0.0  # never finished
    for second in range(1, int(IN_FLIGHT_STALE) + 1):  # a steady flow of attempts that finish
        assert await state.admit_attempt(busy, T0 + second) == 0.0
        await state.finish_attempt(busy, T0 + second, failed=False)
    later = T0 + IN_FLIGHT_STALE + 1
    for _ in range(LIMITS.max_failures - 1):  # the leaked one has gone stale: all but the one failure is free
        assert await state.admit_attempt(busy, later) == 0.0
    assert await state.admit_attempt(busy, later) == ATTEMPTS_BUSY


async def test_hard_lock_after_consecutive_failures_lasts_until_cleared(state: SharedState) -> None:
    """hard_lock_after consecutive failures, however spread out, lock for good; clear_failures lifts it."""
    limits = AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=4)
    reported = await fail(state, "alice", times=4, start=T0, every=3600.0, limits=limits)
    assert reported == [0.0, 0.0, 0.0, math.inf]
    assert await state.lock_remaining(["alice"], T0 + 10 * 365 * DAY) == math.inf
    assert await state.admit_attempt([("alice", limits)], T0 + 20 * 365 * DAY) == math.inf

    await state.clear_failures(["alice"])
    assert await state.lock_remaining(["alice"], T0 + 20 * 365 * DAY) == 0.0


async def test_clear_failures_forgets_counts_locks_and_backoff(state: SharedState) -> None:
    """After clear_failures a key starts afresh: no lock, an empty window, the first lockout length again."""
    assert await fail(state, "alice", times=2, start=T0) == [0.0, 0.0]
    await state.clear_failures(["alice"])
    assert await fail(state, "alice", times=2, start=T0 + 2) == [0.0, 0.0]

    assert (await fail(state, "alice", times=1, start=T0 + 4))[-1] == 10.0
    await state.clear_failures(["alice", "never-seen"])
    assert await state.lock_remaining(["alice"], T0 + 5) == 0.0
    assert (await fail(state, "alice", times=3, start=T0 + 5))[-1] == 10.0  # not doubled

    await state.clear_failures([])


async def test_several_keys_in_one_call_report_the_longest_lock(state: SharedState) -> None:
    """An attempt counts against every key with its own limits; the longest lock is the one in force."""
    ip_limits = AttemptLimits(max_failures=2, window=60.0, lockout=50.0, max_lockout=100.0, hard_lock_after=0)
    pair = [("alice", LIMITS), ("10.0.0.1", ip_limits)]
    assert await counted(state, pair, T0) == 0.0
    assert await counted(state, pair, T0 + 1) == 50.0  # the IP locks first
    assert await state.admit_attempt(pair, T0 + 2) == 49.0
    assert await counted(state, [("alice", LIMITS)], T0 + 2) == 10.0  # the user's third: 10 s, shorter
    assert await state.lock_remaining(["alice", "10.0.0.1"], T0 + 2) == 49.0
    assert await state.lock_remaining(["10.0.0.1"], T0 + 2) == 49.0


async def test_unknown_keys_and_no_keys_are_unlocked(state: SharedState) -> None:
    """lock_remaining is 0.0 for keys never seen and for an empty key list; an attempt on no keys is admitted."""
    assert await state.lock_remaining(["nobody"], T0) == 0.0
    assert await state.lock_remaining([], T0) == 0.0
    assert await state.admit_attempt([], T0) == 0.0
    await state.finish_attempt([], T0, failed=True)


async def test_keys_with_any_characters_are_distinct(state: SharedState) -> None:
    """Keys are opaque: spaces, colons, slashes and non-ASCII in user names or IPv6 addresses are fine."""
    odd = ["ü ser:with/odd*chars", "::1", "att:x", ""]
    for key in odd:
        assert (await fail(state, key, times=3, start=T0))[-1] == 10.0
        await state.clear_failures([key])
    await fail(state, "::1", times=3, start=T0)
    assert await state.lock_remaining(["::1"], T0 + 2) == 10.0
    assert await state.lock_remaining([k for k in odd if k != "::1"], T0 + 2) == 0.0


async def test_fractional_timestamps_are_kept_exactly(state: SharedState) -> None:
    """Lock times keep full double precision (no rounding to 14 digits or truncation to whole seconds)."""
    limits = AttemptLimits(max_failures=1, window=60.0, lockout=10.5, max_lockout=100.0, hard_lock_after=0)
    first = T0 + 0.123456
    later = T0 + 3.654321
    assert await counted(state, [("alice", limits)], first) == 10.5
    assert await state.lock_remaining(["alice"], later) == (first + 10.5) - later


# --- TOTP step claims ---------------------------------------------------------------------------------------


async def test_totp_step_claims_only_move_forward(state: SharedState) -> None:
    """A step is accepted once and only if newer than every step claimed before for that user."""
    assert await claim(state, "alice", 1000, T0, 300.0)
    assert not await claim(state, "alice", 1000, T0, 300.0)
    assert not await claim(state, "alice", 999, T0, 300.0)
    assert await claim(state, "alice", 1001, T0 + 30, 300.0)
    assert not await claim(state, "alice", 1000, T0 + 30, 300.0)
    assert await claim(state, "bob", 1000, T0 + 30, 300.0)
    assert await claim(state, "bob", 1002, T0 + 60, 300.0)
    assert not await claim(state, "alice", 1001, T0 + 60, 300.0)


async def test_concurrent_claims_of_one_step_have_one_winner(state: SharedState) -> None:
    """50 concurrent claims of the same user's step: exactly one succeeds."""
    results = await asyncio.gather(*(claim(state, "alice", 1000, T0, 300.0) for _ in range(50)))
    assert results.count(True) == 1


@pytest.mark.redis
async def test_two_replicas_racing_for_one_step_have_one_winner(
    redis_state: RedisSharedState, other_replica: RedisSharedState
) -> None:
    """Two replicas (separate clients) claiming the same step concurrently: exactly one claim succeeds."""
    claims = [claim(replica, "alice", 1000, T0, 300.0) for _ in range(25) for replica in (redis_state, other_replica)]
    results = await asyncio.gather(*claims)
    assert results.count(True) == 1
    assert not await claim(other_replica, "alice", 999, T0, 300.0)


# --- TOTP attempts judged in one step -----------------------------------------------------------------------

ALICE = StepClaim("alice", 1000, 300.0)


async def judged(state: SharedState, keyed: list[tuple[str, AttemptLimits]], now: float, c: StepClaim | None) -> str:
    """One TOTP attempt (``c``: a correct code's step, None: a wrong code), forgetting its first key on success:
    ``accepted``, ``failed`` or the refusal."""
    judgement = await state.judge_totp_attempt(keyed, now, claim=c, forget=[keyed[0][0]])
    if judgement.refused:
        return f"refused {judgement.refused}"
    return "accepted" if judgement.accepted else "failed"


async def test_totp_attempts_on_a_locked_key_are_refused_right_or_wrong_and_uncounted(state: SharedState) -> None:
    """A lock on any key refuses the attempt before its code counts: the same answer for a right code and a wrong
    one, nothing counted, the step not claimed (usable once the lock ends)."""
    pair = [("alice", LIMITS), ("10.0.0.1", LIMITS)]
    assert (await fail(state, "alice", times=3, start=T0))[-1] == 10.0  # until T0+12
    assert await judged(state, pair, T0 + 4, ALICE) == "refused 8.0"
    assert await judged(state, pair, T0 + 4, None) == "refused 8.0"
    assert await state.lock_remaining(["10.0.0.1"], T0 + 4) == 0.0
    assert await fail(state, "10.0.0.1", times=2, start=T0 + 5) == [0.0, 0.0]  # the refused ones counted nothing
    assert await judged(state, pair, T0 + 12, ALICE) == "accepted"

    hard = AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=1)
    assert await counted(state, [("mallory", hard)], T0) == math.inf
    assert await judged(state, [("mallory", hard)], T0 + DAY, StepClaim("mallory", 1, 90.0)) == "refused inf"


async def test_wrong_codes_and_replays_count_on_every_key(state: SharedState) -> None:
    """A wrong code, or a step claimed before (a replay, any older step too), is one failure on the user and on
    the address, locking as finish_attempt does."""
    pair = [("alice", LIMITS), ("10.0.0.1", LIMITS)]
    assert await judged(state, pair, T0, ALICE) == "accepted"
    assert await judged(state, pair, T0 + 1, ALICE) == "failed"  # the same step again
    assert await judged(state, pair, T0 + 2, StepClaim("alice", 999, 300.0)) == "failed"
    assert await judged(state, pair, T0 + 3, None) == "failed"
    assert await state.lock_remaining(["alice"], T0 + 3) == 10.0
    assert await state.lock_remaining(["10.0.0.1"], T0 + 3) == 10.0


async def test_a_correct_totp_code_clears_the_users_failures_never_the_addresss(state: SharedState) -> None:
    """Accepted, the attempt forgets its user's failures and counts nothing on the address, whose failures stay."""
    pair = [("alice", LIMITS), ("10.0.0.1", LIMITS)]
    assert [await judged(state, pair, T0 + i, None) for i in range(2)] == ["failed", "failed"]
    assert await judged(state, pair, T0 + 2, ALICE) == "accepted"
    assert await fail(state, "alice", times=2, start=T0 + 3) == [0.0, 0.0]  # alice starts afresh
    assert await fail(state, "10.0.0.1", times=1, start=T0 + 3) == [10.0]  # the address's third failure


async def test_other_attempts_in_flight_count_against_a_totp_attempt(state: SharedState) -> None:
    """Attempts admitted elsewhere (a backup code, say) and not yet finished count: while the failures plus those
    could reach the limit, a TOTP attempt is told to wait, right or wrong, and nothing is written."""
    keyed = [("alice", LIMITS)]
    await fail(state, "alice", times=1, start=T0)
    for _ in range(LIMITS.max_failures - 1):
        assert await state.admit_attempt(keyed, T0 + 1) == 0.0
    assert await judged(state, keyed, T0 + 1, ALICE) == f"refused {ATTEMPTS_BUSY}"
    assert await judged(state, keyed, T0 + 1, None) == f"refused {ATTEMPTS_BUSY}"
    await state.finish_attempt(keyed, T0 + 1, failed=False)  # one of them ends unjudged
    assert await judged(state, keyed, T0 + 1, None) == "failed"  # the second failure
    await state.finish_attempt(keyed, T0 + 1, failed=True)  # the third: locked
    assert await state.lock_remaining(["alice"], T0 + 1) == 10.0


async def test_concurrent_wrong_totp_codes_never_outrun_the_limit(state: SharedState) -> None:
    """Forty wrong codes at once: exactly max_failures are counted (the last locks); every other one is refused."""
    pair = [("alice", LIMITS), ("10.0.0.1", LIMITS)]
    results = await asyncio.gather(*(judged(state, pair, T0, None) for _ in range(40)))
    assert results.count("failed") == LIMITS.max_failures
    assert results.count("refused 10.0") == 40 - LIMITS.max_failures


async def test_record_failure_counts_without_releasing_others(state: SharedState) -> None:
    """record_failure counts one failure on each key and leaves the reservations of attempts in flight alone."""
    keyed = [("alice", LIMITS)]
    assert await state.admit_attempt(keyed, T0) == 0.0  # in flight
    await state.record_failure(keyed, T0)
    assert await state.admit_attempt(keyed, T0) == 0.0  # one failure + one in flight: room for this one
    assert await state.admit_attempt(keyed, T0) == ATTEMPTS_BUSY  # the first is still in flight
    await state.record_failure(keyed, T0 + 1)
    await state.record_failure([("alice", LIMITS), ("10.0.0.1", LIMITS)], T0 + 2)
    assert await state.lock_remaining(["alice"], T0 + 2) == 10.0
    assert await state.lock_remaining(["10.0.0.1"], T0 + 2) == 0.0
    await state.record_failure([], T0)


@pytest.mark.redis
async def test_replicas_judging_one_step_at_once_accept_it_once(
    redis_state: RedisSharedState, other_replica: RedisSharedState
) -> None:
    """The same correct code judged on two replicas at once: one acceptance, every other attempt a failure."""
    keyed = [("alice", AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=0))]
    attempts = [judged(replica, keyed, T0, ALICE) for _ in range(10) for replica in (redis_state, other_replica)]
    results = await asyncio.gather(*attempts)
    assert results.count("accepted") == 1 and results.count("failed") == 19


# --- one-time marks -----------------------------------------------------------------------------------------


async def test_claim_once_succeeds_once_per_key(state: SharedState) -> None:
    """claim_once is True for the first claim of a key only; other keys are independent."""
    assert await state.claim_once("jti-1", T0, 60.0)
    assert not await state.claim_once("jti-1", T0 + 1, 60.0)
    assert await state.claim_once("jti-2", T0 + 1, 60.0)
    results = await asyncio.gather(*(state.claim_once("jti-3", T0, 60.0) for _ in range(20)))
    assert results.count(True) == 1


async def test_memory_claim_once_is_free_again_after_ttl() -> None:
    """In memory, a claimed key can be claimed again once ``ttl`` seconds of injected time have passed."""
    state = MemorySharedState()
    assert await state.claim_once("jti-1", T0, 60.0)
    assert not await state.claim_once("jti-1", T0 + 59.9, 60.0)
    assert await state.claim_once("jti-1", T0 + 60, 60.0)
    assert not await state.claim_once("jti-1", T0 + 61, 60.0)


@pytest.mark.redis
async def test_redis_sets_real_ttls_for_garbage_collection(
    redis_state: RedisSharedState, raw_redis: redis.asyncio.Redis, prefix: str
) -> None:
    """Every Redis key expires on its own (claims after ttl, counters after 30 days), except a hard lock."""
    await redis_state.claim_once("jti-1", T0, 60.0)
    assert 0 < await raw_redis.pttl(f"{prefix}once:jti-1") <= 60_000

    await claim(redis_state, "alice", 1000, T0, 90.0)
    assert 0 < await raw_redis.pttl(f"{prefix}totp:alice") <= 90_000

    await redis_state.put_challenge("c1", b"payload", T0, 120.0)
    assert 0 < await raw_redis.pttl(f"{prefix}chal:c1") <= 120_000

    await fail(redis_state, "alice", times=3, start=T0)  # locked for 10 s
    assert 30 * DAY < await raw_redis.ttl(f"{prefix}att:alice") <= 30 * DAY + 10

    hard = AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=1)
    assert await counted(redis_state, [("mallory", hard)], T0) == math.inf

    assert await redis_state.admit_attempt([("carol", LIMITS)], T0) == 0.0  # admitted, never finished
    assert 0 < await raw_redis.ttl(f"{prefix}att:carol") <= IN_FLIGHT_STALE
    assert await raw_redis.ttl(f"{prefix}att:mallory") == -1  # exists, never expires


# --- challenges ---------------------------------------------------------------------------------------------


async def test_challenge_put_get_take(state: SharedState) -> None:
    """get reads a challenge without consuming it; take returns it once and deletes it; a put replaces."""
    await state.put_challenge("c1", b"\x00first\xff", T0, 120.0)
    assert await state.get_challenge("c1", T0 + 1) == b"\x00first\xff"
    assert await state.get_challenge("c1", T0 + 2) == b"\x00first\xff"
    await state.put_challenge("c1", b"second", T0 + 3, 120.0)
    assert await state.take_challenge("c1", T0 + 4) == b"second"
    assert await state.take_challenge("c1", T0 + 5) is None
    assert await state.get_challenge("c1", T0 + 5) is None
    assert await state.get_challenge("missing", T0) is None
    assert await state.take_challenge("missing", T0) is None


async def test_pending_challenges_are_counted_until_taken_or_expired(state: SharedState) -> None:
    """count_challenges sees every pending challenge, and no longer counts one that was taken or has expired."""
    assert await state.count_challenges(T0) == 0
    await state.put_challenge("c1", b"a", T0, 60.0)
    await state.put_challenge("c2", b"b", T0, 120.0)
    await state.put_challenge("c3", b"c", T0, 120.0)
    assert await state.count_challenges(T0 + 1) == 3
    assert await state.take_challenge("c2", T0 + 2) == b"b"
    assert await state.count_challenges(T0 + 2) == 2
    assert await state.count_challenges(T0 + 61) == 1  # c1 expired by injected time


async def test_empty_challenge_payload_round_trips(state: SharedState) -> None:
    """An empty payload is a payload, not a missing challenge."""
    await state.put_challenge("c1", b"", T0, 120.0)
    assert await state.get_challenge("c1", T0) == b""
    assert await state.take_challenge("c1", T0) == b""


async def test_concurrent_takes_have_one_winner(state: SharedState) -> None:
    """20 concurrent takes of one challenge: exactly one gets the payload, the others None."""
    await state.put_challenge("c1", b"payload", T0, 120.0)
    results = await asyncio.gather(*(state.take_challenge("c1", T0 + 1) for _ in range(20)))
    assert [r for r in results if r is not None] == [b"payload"]


@pytest.mark.redis
async def test_two_replicas_taking_one_challenge_have_one_winner(
    redis_state: RedisSharedState, other_replica: RedisSharedState
) -> None:
    """A challenge put by one replica is visible to another, and only one of them can take it."""
    await redis_state.put_challenge("c1", b"payload", T0, 120.0)
    assert await other_replica.get_challenge("c1", T0) == b"payload"
    takes = [replica.take_challenge("c1", T0 + 1) for _ in range(10) for replica in (redis_state, other_replica)]
    results = await asyncio.gather(*takes)
    assert [r for r in results if r is not None] == [b"payload"]


async def test_challenge_expires_by_injected_time(state: SharedState) -> None:
    """At put time + ttl a challenge is gone for get and take, even if the backend still holds it."""
    await state.put_challenge("c1", b"payload", T0, 120.0)
    assert await state.get_challenge("c1", T0 + 119.9) == b"payload"
    assert await state.get_challenge("c1", T0 + 120) is None
    await state.put_challenge("c2", b"payload", T0, 120.0)
    assert await state.take_challenge("c2", T0 + 121) is None


# --- WebAuthn ceremonies ------------------------------------------------------------------------------------


async def test_a_ceremony_is_taken_once_and_expires_by_injected_time(state: SharedState) -> None:
    """take_ceremony returns a ceremony once and deletes it; at put time + ttl it is gone even if the backend still
    holds it; an unknown id is None."""
    await state.put_ceremony("w1", b"\x00ceremony\xff", T0, 120.0)
    assert await state.take_ceremony("w1", T0 + 119.9) == b"\x00ceremony\xff"
    assert await state.take_ceremony("w1", T0 + 119.9) is None
    await state.put_ceremony("w2", b"", T0, 120.0)
    assert await state.take_ceremony("w2", T0 + 120) is None
    assert await state.take_ceremony("missing", T0) is None


async def test_ceremonies_and_pending_sign_ins_are_kept_apart(state: SharedState) -> None:
    """A ceremony id never finds a pending sign-in of the same id, nor the other way round, and ceremonies are not
    counted as sign-ins waiting for their second factor."""
    await state.put_ceremony("same", b"ceremony", T0, 120.0)
    await state.put_challenge("same", b"sign-in", T0, 120.0)
    assert await state.count_challenges(T0) == 1
    assert await state.take_challenge("same", T0) == b"sign-in"
    assert await state.take_challenge("same", T0) is None
    assert await state.take_ceremony("same", T0) == b"ceremony"


async def test_concurrent_takes_of_one_ceremony_have_one_winner(state: SharedState) -> None:
    """20 concurrent takes of one ceremony: exactly one gets it."""
    await state.put_ceremony("w1", b"payload", T0, 120.0)
    results = await asyncio.gather(*(state.take_ceremony("w1", T0 + 1) for _ in range(20)))
    assert [r for r in results if r is not None] == [b"payload"]


@pytest.mark.redis
async def test_two_replicas_taking_one_ceremony_have_one_winner(
    redis_state: RedisSharedState, other_replica: RedisSharedState
) -> None:
    """A ceremony put by one replica is taken on another, by exactly one of the takers racing on both."""
    await redis_state.put_ceremony("w1", b"payload", T0, 120.0)
    takes = [replica.take_ceremony("w1", T0 + 1) for _ in range(10) for replica in (redis_state, other_replica)]
    results = await asyncio.gather(*takes)
    assert [r for r in results if r is not None] == [b"payload"]


# --- backend-specific behaviour -----------------------------------------------------------------------------


@pytest.mark.redis
async def test_prefixes_separate_deployments(redis_server: RedisServer, redis_state: RedisSharedState) -> None:
    """Two states with different prefixes on one Redis share nothing."""
    other = RedisSharedState(redis_server.url, prefix=f"other-{uuid.uuid4().hex}:")
    try:
        await fail(redis_state, "alice", times=3, start=T0)
        await redis_state.put_challenge("c1", b"payload", T0, 120.0)
        assert await claim(redis_state, "alice", 1000, T0, 300.0)
        assert await other.lock_remaining(["alice"], T0 + 2) == 0.0
        assert await other.get_challenge("c1", T0) is None
        assert await claim(other, "alice", 1000, T0, 300.0)
    finally:
        await other.close()


async def test_from_client_refuses_a_decoding_client() -> None:
    """A client that decodes responses to str would corrupt binary payloads, so from_client refuses it."""
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisSharedState.from_client(client)
    finally:
        await client.aclose()


async def test_memory_purges_expired_entries() -> None:
    """Expired claims and challenges, and counters idle past the 30-day retention, go; hard locks stay."""
    state = MemorySharedState()
    hard = AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=1)
    for i in range(100):
        await state.claim_once(f"jti-{i}", T0, 60.0)
        await claim(state, f"user-{i}", 1000, T0, 90.0)
        await state.put_challenge(f"c-{i}", b"payload", T0, 120.0)
        await counted(state, [(f"ip-{i}", LIMITS)], T0)
    assert await counted(state, [("mallory", hard)], T0) == math.inf
    assert state.size() == 401

    await state.lock_remaining([], T0 + 31 * DAY)  # any call may sweep
    assert state.size() == 1
    assert await state.lock_remaining(["mallory"], T0 + 31 * DAY) == math.inf


async def test_memory_counters_are_forgotten_after_retention() -> None:
    """Consecutive failures over 30 days apart do not add up to a hard lock (like Redis key expiry)."""
    state = MemorySharedState()
    limits = AttemptLimits(max_failures=100, window=60.0, lockout=10.0, max_lockout=25.0, hard_lock_after=2)
    assert await counted(state, [("alice", limits)], T0) == 0.0
    assert await counted(state, [("alice", limits)], T0 + 31 * DAY) == 0.0
    assert await counted(state, [("alice", limits)], T0 + 32 * DAY) == math.inf


# --- Redis unavailable --------------------------------------------------------------------------------------

CALLS: dict[str, Callable[[SharedState], Awaitable[object]]] = {
    "ping": lambda s: s.ping(),
    "lock_remaining": lambda s: s.lock_remaining(["alice", "10.0.0.1"], T0),
    "admit_attempt": lambda s: s.admit_attempt([("alice", LIMITS)], T0),
    "finish_attempt": lambda s: s.finish_attempt([("alice", LIMITS)], T0, failed=True),
    "clear_failures": lambda s: s.clear_failures(["alice"]),
    "judge_totp_attempt": lambda s: s.judge_totp_attempt([("alice", LIMITS)], T0, claim=StepClaim("alice", 1, 90.0)),
    "record_failure": lambda s: s.record_failure([("alice", LIMITS)], T0),
    "claim_once": lambda s: s.claim_once("jti-1", T0, 60.0),
    "put_challenge": lambda s: s.put_challenge("c1", b"payload", T0, 120.0),
    "get_challenge": lambda s: s.get_challenge("c1", T0),
    "take_challenge": lambda s: s.take_challenge("c1", T0),
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_unreachable_redis_raises_dependency_unavailable(method: str) -> None:
    """With nothing listening, every method raises DependencyUnavailable('redis'), never a driver error."""
    state = RedisSharedState(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    try:
        with pytest.raises(DependencyUnavailable) as info:
            await CALLS[method](state)
        assert info.value.dependency == "redis"
    finally:
        await state.close()


@pytest.mark.parametrize("method", ["ping", "admit_attempt", "take_challenge"])
async def test_silent_redis_raises_dependency_unavailable(method: str) -> None:
    """A server that accepts connections but never answers ends in DependencyUnavailable after the timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        state = RedisSharedState(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", socket_timeout=0.2)
        try:
            with pytest.raises(DependencyUnavailable):
                await CALLS[method](state)
        finally:
            await state.close()
