"""Attempt limiting, in one place for passwords and codes alike: per subject key and per client address.

A subject key names what is being guessed (``user:alice`` for her codes, ``login:alice`` for her password), so a
flood of wrong passwords cannot lock a user out of MFA and the other way round. The client address is counted
with its own, looser limits.

An attempt is reserved on both keys when it is admitted, before it is judged: while the failures counted plus the
attempts in flight could reach a limit, further attempts wait a moment (``AttemptsBusy``), so concurrent guesses, on one
replica or many, can never outrun the limits. Finishing releases the reservation: a failure is counted, a success
clears the subject's counter (never the address's), and an attempt that ended before it was judged (a dependency
down) counts nothing. ``AttemptGuard.judge`` is that protocol, written once for passwords and codes.

A TOTP code needs no reservation: it is judged where its secret is, before shared state is asked, so
``AttemptGuard.judge_totp`` settles the whole attempt in one atomic step (``SharedState.judge_totp_attempt``: refused
as ``admit`` refuses, counting the attempts of others in flight; else the failure counted, or the step claimed and
the subject's counter cleared), one Redis round trip.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mfa_gateway.core.errors import AttemptsBusy, DependencyUnavailable, LockedOut
from mfa_gateway.core.model import ATTEMPTS_BUSY, AttemptLimits, StepClaim
from mfa_gateway.ports import SharedState

HARD_LOCK_RETRY_AFTER = 86400.0
T = TypeVar("T")

Report = Callable[[str, T | None], Awaitable[None]]
"""Audits an attempt's result (``busy``, ``locked_out``, ``failure`` or ``success``), with what a success found."""


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def login_key(user_id: str) -> str:
    return f"login:{user_id}"


def ip_key(client_ip: str) -> str:
    return f"ip:{client_ip}"


def refusal(remaining: float) -> tuple[str, LockedOut]:
    """The audit result and the error for an attempt ``admit`` refused (``remaining`` not 0)."""
    if remaining == ATTEMPTS_BUSY:
        return "busy", AttemptsBusy()
    if math.isinf(remaining):
        message = "Too many failed attempts; an administrator must unlock this account."
        return "locked_out", LockedOut(HARD_LOCK_RETRY_AFTER, message)
    return "locked_out", LockedOut(remaining)


class AttemptGuard:
    def __init__(self, state: SharedState, clock: Callable[[], float], ip_limits: AttemptLimits) -> None:
        self._state = state
        self._clock = clock
        self._ip_limits = ip_limits

    def _keyed(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> list[tuple[str, AttemptLimits]]:
        return [(subject, limits)] + ([(ip_key(client_ip), self._ip_limits)] if client_ip else [])

    async def admit(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> float:
        """0.0 if the attempt may be judged (it is now reserved: finish it with ``failed``, ``succeeded`` or
        ``unjudged``), else what ``refusal`` turns into an answer: a lock's remaining seconds (``math.inf`` for a
        hard lock), or ``ATTEMPTS_BUSY`` while the attempts in flight could reach a limit."""
        return await self._state.admit_attempt(self._keyed(subject, limits, client_ip), self._clock())

    async def failed(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> None:
        await self._state.finish_attempt(self._keyed(subject, limits, client_ip), self._clock(), failed=True)

    async def succeeded(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> None:
        keyed = self._keyed(subject, limits, client_ip)
        await self._state.finish_attempt(keyed, self._clock(), failed=False, forget=[subject])

    async def unjudged(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> None:
        """An admitted attempt ended before it was judged: release it uncounted, if shared state answers (a
        reservation left behind goes stale after ``IN_FLIGHT_STALE``)."""
        with contextlib.suppress(DependencyUnavailable):
            await self._state.finish_attempt(self._keyed(subject, limits, client_ip), self._clock(), failed=False)

    async def judge(
        self,
        subject: str,
        limits: AttemptLimits,
        client_ip: str | None,
        check: Callable[[], Awaitable[T | None]],
        report: Report[T],
    ) -> T | None:
        """The one way an attempt is judged: admitted (or refused: reported, then ``LockedOut``/``AttemptsBusy``
        raised), checked (``check`` answers what it found, or None for a wrong guess), then finished: a failure
        counted and reported (None returned, the caller raises its own error), a success clears the subject's
        counter; an attempt whose check raised (a dependency down) goes back uncounted and the error propagates."""
        remaining = await self.admit(subject, limits, client_ip)
        if remaining:
            result, error = refusal(remaining)
            await report(result, None)
            raise error
        try:
            found = await check()
        except Exception:  # not judged (a dependency down, say): the reservation goes back uncounted
            await self.unjudged(subject, limits, client_ip)
            raise
        if found is None:
            await self.failed(subject, limits, client_ip)
            await report("failure", None)
            return None
        await self.succeeded(subject, limits, client_ip)
        await report("success", found)
        return found

    async def refuse_if_locked(self, subject: str, client_ip: str | None, report: Report[T]) -> None:
        """Refuse (reported, then ``LockedOut`` raised) while a lock holds on the subject or the address: before
        work that costs more than asking, such as a secret Vault must decrypt. Nothing is reserved or counted."""
        keys = [subject] + ([ip_key(client_ip)] if client_ip else [])
        remaining = await self._state.lock_remaining(keys, self._clock())
        if remaining:
            result, error = refusal(remaining)
            await report(result, None)
            raise error

    async def judge_totp(
        self,
        subject: str,
        limits: AttemptLimits,
        client_ip: str | None,
        claim: StepClaim | None,
        confirm: Callable[[], Awaitable[T | None]],
        report: Report[T],
    ) -> T | None:
        """A TOTP attempt already judged where its secret is (``claim``: the step its code matched, None for a wrong
        code), settled in one step of shared state: refused (reported, then ``LockedOut``/``AttemptsBusy`` raised,
        the same whether the code was right or wrong), a failure (a wrong code, a replay: counted, reported, None
        returned), or the step claimed and the subject's counter cleared, then ``confirm``ed (the durable claim:
        what it found, or None when it refuses the step, a replay that shared state had forgotten: that failure is
        counted then, a second round trip on that rare path only). A ``confirm`` that raises (a dependency down)
        propagates; no reservation is held to give back."""
        keyed = self._keyed(subject, limits, client_ip)
        judged = await self._state.judge_totp_attempt(keyed, self._clock(), claim=claim, forget=[subject])
        if judged.refused:
            result, error = refusal(judged.refused)
            await report(result, None)
            raise error
        found = await confirm() if judged.accepted else None
        if found is None:
            if judged.accepted:
                await self._state.record_failure(keyed, self._clock())
            await report("failure", None)
            return None
        await report("success", found)
        return found
