"""User names and builtin users.

A user name is canonicalised once (Unicode NFKC, then case-folded), so ``Alice`` and ``ALICE`` are one user for
enrollment, replay marks and lockouts alike: an attacker cannot escape a lockout by changing case.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mfa_gateway.core.errors import BadRequest

MAX_USER_LENGTH = 256


def canonical_user(name: str) -> str:
    canonical = unicodedata.normalize("NFKC", name).strip().casefold()
    if not canonical or len(canonical) > MAX_USER_LENGTH or any(unicodedata.category(c)[0] == "C" for c in canonical):
        raise BadRequest("The user name is not valid.", code="invalid_user")
    return canonical


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str
    email: str | None = None
    groups: tuple[str, ...] = ()
