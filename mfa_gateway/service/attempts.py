"""Attempt limiting, in one place for passwords and codes alike: per subject key and per client address.

A subject key names what is being guessed (``user:alice`` for her codes, ``login:alice`` for her password), so a
flood of wrong passwords cannot lock a user out of MFA and the other way round. The client address is counted
with its own, looser limits. Only a success clears the subject's counter (never the address's).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mfa_gateway.core.errors import LockedOut
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

    async def remaining(self, subject: str, client_ip: str | None) -> float:
        """Seconds the subject or the address is still locked (0.0 if neither, ``math.inf`` for a hard lock)."""
        keys = [subject] + ([ip_key(client_ip)] if client_ip else [])
        return await self._state.lock_remaining(keys, self._clock())

    async def failed(self, subject: str, limits: AttemptLimits, client_ip: str | None) -> None:
        keyed = [(subject, limits)] + ([(ip_key(client_ip), self._ip_limits)] if client_ip else [])
        await self._state.record_failures(keyed, self._clock())

    async def succeeded(self, subject: str) -> None:
        await self._state.clear_failures([subject])
