"""Pending sign-ins: a first factor that passed, waiting for its second, kept in shared state for a few minutes.

Two kinds: ``login`` (the builtin password was right) and ``intercept`` (the app accepted its own login form;
the app's response, with its session cookie, is *held* until MFA succeeds). Payloads are sealed with the keyring
before they reach Redis, so a held app session cookie is never stored in clear.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mfa_gateway.core.keyring import Keyring, KeyringError
from mfa_gateway.ports import SharedState

PURPOSE = "pending"


@dataclass(frozen=True, slots=True)
class HeldResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Pending:
    kind: Literal["login", "intercept"]
    user_id: str
    auth_time: float
    methods: tuple[str, ...]
    binding: str = ""
    return_to: str = "/"
    held: HeldResponse | None = field(default=None)

    def to_json(self) -> bytes:
        record: dict[str, Any] = {
            "kind": self.kind,
            "user": self.user_id,
            "auth_time": self.auth_time,
            "methods": list(self.methods),
            "binding": self.binding,
            "return_to": self.return_to,
        }
        if self.held is not None:
            record["held"] = {
                "status": self.held.status,
                "headers": [list(h) for h in self.held.headers],
                "body": base64.b64encode(self.held.body).decode("ascii"),
            }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Pending:
        record = json.loads(raw)
        held = record.get("held")
        return cls(
            kind=record["kind"],
            user_id=record["user"],
            auth_time=float(record["auth_time"]),
            methods=tuple(record["methods"]),
            binding=record.get("binding", ""),
            return_to=record.get("return_to", "/"),
            held=HeldResponse(
                status=int(held["status"]),
                headers=tuple((str(k), str(v)) for k, v in held["headers"]),
                body=base64.b64decode(held["body"]),
            )
            if held
            else None,
        )


MAX_ID_LENGTH = 64
"""Challenge ids are 32 characters (24 random bytes); anything longer is refused before shared state is asked."""


class PendingChallenges:
    def __init__(
        self, state: SharedState, keyring: Callable[[], Keyring], clock: Callable[[], float], ttl: float
    ) -> None:
        self._state = state
        self._keyring = keyring
        self._clock = clock
        self.ttl = ttl

    async def create(self, pending: Pending) -> str:
        challenge_id = secrets.token_urlsafe(24)
        sealed = self._keyring().encrypt(pending.to_json(), purpose=PURPOSE, context=challenge_id)
        await self._state.put_challenge(challenge_id, sealed, self._clock(), self.ttl)
        return challenge_id

    async def get(self, challenge_id: str) -> Pending | None:
        if len(challenge_id) > MAX_ID_LENGTH:  # no id we made: not worth a round trip to shared state
            return None
        return self._open(challenge_id, await self._state.get_challenge(challenge_id, self._clock()))

    async def take(self, challenge_id: str) -> Pending | None:
        """Read and delete atomically: a pending sign-in completes at most once."""
        if len(challenge_id) > MAX_ID_LENGTH:
            return None
        return self._open(challenge_id, await self._state.take_challenge(challenge_id, self._clock()))

    def _open(self, challenge_id: str, sealed: bytes | None) -> Pending | None:
        if sealed is None:
            return None
        try:
            return Pending.from_json(self._keyring().decrypt(sealed, purpose=PURPOSE, context=challenge_id).plaintext)
        except (KeyringError, ValueError, KeyError, TypeError):
            return None
