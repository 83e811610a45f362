"""Attempt limiting, in one place for passwords and codes alike: per subject key and per client address.

A subject key names what is being guessed (``user:alice`` for her codes, ``login:alice`` for her password), so a
flood of wrong passwords cannot lock a user out of MFA and the other way round. The client address is counted
with its own, looser limits.

An attempt is counted as a failure when it is admitted, before it is judged, so concurrent guesses (on one
replica or many) can never outrun the limits. A success clears the subject's counter and gives the address its
count back; an attempt that ends before its code or password was judged (a dependency down) gives both back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

from mfa_gateway.core.errors import DependencyUnavailable, LockedOut
from mfa_gateway.core.model import AttemptLimits
from mfa_gateway.ports import SharedState

HARD_LOCK_RETRY_AFTER = 86400.0


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def login_key(user_id: str) -> str:
    return f"login:{user_id}"


def ip_key(client_ip: str) -> str:
    return f"ip:{client_ip}"


def locked_out(remaining: float) -> LockedOut:
    if math.isinf(remaining):
        return LockedOut(HARD_LOCK_RETRY_AFTER, "Too many failed attempts; an administrator must unlock this account.")
    return LockedOut(remaining)


class AttemptGuard:
    def __init__(self, state: SharedState, clock: Callable[[], float], ip_limits: AttemptLimits) -> None:
        self._state = state
        self._clock = clock
        self._ip_limits = ip_limits

    def _keyed(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> list[tuple[str, AttemptLimits]]:
        return [(subject, limits)] + ([(ip_key(client_ip), self._ip_limits)] if client_ip else [])

    async def admit(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> float:
        """0.0 if the attempt may be judged (it now counts as a failure), else the seconds the subject or the
        address is still locked (``math.inf`` for a hard lock); nothing is counted then."""
        return await self._state.admit_attempt(self._keyed(subject, limits, client_ip), self._clock())

    async def succeeded(self, subject: str, client_ip: str | None) -> None:
        await self._state.clear_failures([subject])
        if client_ip:
            await self._state.refund_attempt([(ip_key(client_ip), self._ip_limits)], self._clock())

    async def unjudged(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> None:
        """An admitted attempt ended before it was judged: give its count back, if shared state answers."""
        with contextlib.suppress(DependencyUnavailable):
            await self._state.refund_attempt(self._keyed(subject, limits, client_ip), self._clock())
