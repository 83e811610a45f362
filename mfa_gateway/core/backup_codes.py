"""Backup codes: generation, normalisation and the public lookup bucket.

A code is 12 symbols of Crockford's base32 alphabet (60 bits), shown as ``XXXX-XXXX-XXXX``. Input is normalised:
case, spaces and dashes are ignored and the look-alikes O, I and L read as 0, 1 and 1.

Only an Argon2id hash of each code is stored, plus a *lookup bucket* derived from the first two symbols, so that
one attempt costs one slow hash rather than one per stored code. The bucket reveals at most 10 bits of a code;
the remaining 50 bits stay behind Argon2id even if the database leaks.
"""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
GROUP = 4
BUCKET_SYMBOLS = 2
DEFAULT_COUNT = 10
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_MAX_INPUT = 64


def generate(count: int = DEFAULT_COUNT) -> list[str]:
    """``count`` distinct new codes, formatted for display."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))
    return [display(code) for code in sorted(codes)]


def display(code: str) -> str:
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalise(token: str) -> str | None:
    """The canonical form of a typed backup code, or None if the input cannot be one."""
    if len(token) > _MAX_INPUT:
        return None
    cleaned = token.replace("-", "").replace(" ", "").upper().translate(_LOOKALIKES)
    if len(cleaned) != LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def lookup(user_id: str, normalised_code: str) -> str:
    """The public bucket of a code for this user (see the module docstring for what it reveals)."""
    material = f"{user_id}\x00{normalised_code[:BUCKET_SYMBOLS]}".encode()
    return hashlib.sha256(material).hexdigest()[:16]
