"""A TOTP verification settles its attempt in one step of shared state: lockout first, then the code, the replay
guard and the counters together; the durable replay mark after it. Backup codes keep the reservation protocol."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.core.errors import InvalidCode, LockedOut
from mfa_gateway.runtime import Runtime
from mfa_gateway.service.mfa import Caller
from tests.helpers.gateway import FakeClock, current_code, make_runtime, make_settings

ALICE = Caller("alice", "192.0.2.10")
KEYS = ["user:alice", "ip:192.0.2.10"]


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[tuple[Runtime, MemoryAudit, FakeClock]]:
    clock = FakeClock()
    runtime, audit = make_runtime(make_settings(tmp_path), clock)
    await runtime.store.migrate()
    yield runtime, audit, clock
    await runtime.close()


async def enrolled(runtime: Runtime, clock: FakeClock) -> tuple[str, list[str]]:
    start = await runtime.mfa.start_enrollment(ALICE)
    await runtime.mfa.activate(ALICE, current_code(start.secret, clock))
    clock.advance(30)
    return start.secret, start.backup_codes


def counting_calls(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every call the services make on shared state, by method name (the state still answers them)."""
    calls: Counter[str] = Counter()
    for name in ("lock_remaining", "admit_attempt", "finish_attempt", "record_failure", "judge_totp_attempt"):
        method: Callable[..., Awaitable[Any]] = getattr(runtime.state, name)

        async def counted(*args: Any, __name: str = name, __method: Any = method, **kwargs: Any) -> Any:
            calls[__name] += 1
            return await __method(*args, **kwargs)

        monkeypatch.setattr(runtime.state, name, counted)
    return calls


def wrong(secret: str, clock: FakeClock) -> str:
    valid = {current_code(secret, clock, offset=step) for step in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


async def test_each_totp_verification_is_one_call_to_shared_state(
    built: tuple[Runtime, MemoryAudit, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A right code, a wrong one and a replay: one judge_totp_attempt each, nothing else asked of shared state
    (on Redis, one script: one round trip); a backup code keeps its reservation and release (two)."""
    runtime, _, clock = built
    secret, backup = await enrolled(runtime, clock)
    calls = counting_calls(runtime, monkeypatch)
    code = current_code(secret, clock)
    assert (await runtime.mfa.verify(ALICE, code)).method == "otp"
    for attempt in (code, wrong(secret, clock)):  # a replay, a wrong code
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, attempt)
    assert calls == Counter(judge_totp_attempt=3)

    calls.clear()
    assert (await runtime.mfa.verify(ALICE, backup[0])).method == "backup"
    assert calls == Counter(admit_attempt=1, finish_attempt=1)


async def test_a_locked_user_hears_only_of_the_lock_right_code_or_wrong(
    built: tuple[Runtime, MemoryAudit, FakeClock],
) -> None:
    """Lockout first: locked, a right code and a wrong one get the same answer and the same audit result and count
    nothing; once the lock ends, the right code works."""
    runtime, audit, clock = built
    secret, _ = await enrolled(runtime, clock)
    for _ in range(runtime.settings.limits.user.max_failures):
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, wrong(secret, clock))
    del audit.events[:]
    answers = []
    for code in (current_code(secret, clock), wrong(secret, clock)):
        with pytest.raises(LockedOut) as refused:
            await runtime.mfa.verify(ALICE, code)
        answers.append((type(refused.value), refused.value.retry_after, refused.value.code))
    assert answers[0] == answers[1]
    assert [(e.event, e.result, e.detail) for e in audit.events] == [("mfa.verify", "locked_out", {})] * 2
    lockout = runtime.settings.limits.user.lockout
    clock.advance(lockout)
    assert await runtime.state.lock_remaining(KEYS, clock()) == 0.0
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"


async def test_a_replay_that_shared_state_forgot_is_refused_by_the_store_and_counted(
    built: tuple[Runtime, MemoryAudit, FakeClock],
) -> None:
    """Shared state lost its data (a Redis restart without persistence): a used code is accepted there again, but
    the durable mark refuses it; that attempt is a failure, counted on the user and the address, so replays of
    old codes still lead to a lockout."""
    runtime, audit, clock = built
    secret, _ = await enrolled(runtime, clock)
    code = current_code(secret, clock)
    assert (await runtime.mfa.verify(ALICE, code)).method == "otp"
    runtime.state.__init__()  # type: ignore[misc]  # everything forgotten
    del audit.events[:]
    with pytest.raises(InvalidCode):
        await runtime.mfa.verify(ALICE, code)
    assert [(e.result, e.detail) for e in audit.events] == [("failure", {"method": "otp"})]
    for _ in range(runtime.settings.limits.user.max_failures - 1):  # the same code, now refused by shared state
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, code)
    assert await runtime.state.lock_remaining(KEYS, clock()) > 0
    with pytest.raises(LockedOut):
        await runtime.mfa.verify(ALICE, current_code(secret, clock, offset=1))


async def test_a_correct_code_clears_the_users_failures_not_the_addresss(
    built: tuple[Runtime, MemoryAudit, FakeClock],
) -> None:
    """Failures before a correct code are forgotten for the user (a fresh count), kept for the address."""
    runtime, _, clock = built
    secret, _ = await enrolled(runtime, clock)
    limit = runtime.settings.limits.user.max_failures
    for _ in range(limit - 1):
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, wrong(secret, clock))
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"
    for _ in range(limit - 1):
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, wrong(secret, clock))
    assert await runtime.state.lock_remaining(["user:alice"], clock()) == 0.0
    counters = runtime.state._attempts  # type: ignore[attr-defined]
    assert counters["ip:192.0.2.10"].failures == 2 * (limit - 1)


async def test_a_secret_vault_decrypts_is_not_opened_for_a_locked_user(
    built: tuple[Runtime, MemoryAudit, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cipher that asks a service to decrypt (Transit), a lock is checked first: a flood against a locked
    user costs the service nothing. Unlocked, the attempt is then settled in one step as with a local key."""
    runtime, audit, clock = built
    secret, _ = await enrolled(runtime, clock)
    cipher, opened = runtime.mfa._cipher, []
    decrypt = cipher.decrypt

    async def remote_decrypt(ciphertext: bytes, *, context: str) -> Any:
        opened.append(context)
        return await decrypt(ciphertext, context=context)

    monkeypatch.setattr(cipher, "opens_locally", lambda ciphertext: False)
    monkeypatch.setattr(cipher, "decrypt", remote_decrypt)
    calls = counting_calls(runtime, monkeypatch)
    assert (await runtime.mfa.verify(ALICE, current_code(secret, clock))).method == "otp"
    assert calls == Counter(lock_remaining=1, judge_totp_attempt=1) and opened == ["alice"]
    for _ in range(runtime.settings.limits.user.max_failures):
        with pytest.raises(InvalidCode):
            await runtime.mfa.verify(ALICE, wrong(secret, clock))
    del audit.events[:], opened[:]
    for _ in range(3):
        with pytest.raises(LockedOut):
            await runtime.mfa.verify(ALICE, current_code(secret, clock, offset=1))
    assert opened == [] and [e.result for e in audit.events] == ["locked_out"] * 3
