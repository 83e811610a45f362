"""Argon2id hashing (argon2-cffi) for backup codes and builtin passwords.

Hashing is slow on purpose; callers run it off the event loop (``mfa_gateway.runtime.hashing``).
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2
import argon2.exceptions


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Defaults are RFC 9106's second recommended profile (t=3, 64 MiB, p=4)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Hasher:
    def __init__(self, params: Argon2Params) -> None:
        self._ph = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        # Verifying an unknown user against this keeps "no such user" as slow as "wrong password": made here, with
        # the current settings, it costs what a user's hash costs once re-hashed at sign-in (see ``needs_rehash``).
        self.dummy_hash = self._ph.hash("mfa-gateway timing equaliser")

    def hash(self, value: str) -> str:
        return self._ph.hash(value)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other settings than the current ones (re-hash it at next use)."""
        try:
            return bool(self._ph.check_needs_rehash(stored_hash))
        except (argon2.exceptions.InvalidHashError, ValueError):  # not an Argon2 hash: nothing to re-hash into
            return False

    def matches(self, stored_hash: str, value: str) -> bool:
        try:
            return bool(self._ph.verify(stored_hash, value))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
