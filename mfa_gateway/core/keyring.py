"""A versioned AES-256-GCM keyring: the primary key encrypts, every non-disabled key decrypts by its id.

Ciphertext layout (bytes)::

    0x01 | len(kid) (1 byte) | kid (ASCII) | nonce (12) | AES-GCM ciphertext and tag

The associated data binds a ciphertext to its ``purpose`` (``totp-secret``, ``session`` …), its ``context``
(the user id) and the key id, so a ciphertext moved to another user's row or used for another purpose fails.

A keyring is stored as one JSON document (a file today, a Vault or AWS secret later)::

    {"primary": "2026-11", "keys": [{"kid": "2026-11", "k": "<base64url 32 bytes>", "status": "active"},
                                     {"kid": "2026-05", "k": "…", "status": "decrypt-only"}]}

Rotation: add the new key as ``decrypt-only``; wait one cache period; make it primary (``active``); re-encrypt
(``mfa-gateway rekey``, and lazily on use); then mark the old key ``disabled``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
_KID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class KeyringError(Exception):
    """A keyring document is invalid, or a ciphertext cannot be opened. Messages never include key material."""


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Decrypted:
    plaintext: bytes
    kid: str


class Keyring:
    def __init__(self, primary: str, keys: Mapping[str, tuple[bytes, KeyStatus]]) -> None:
        if primary not in keys:
            raise KeyringError(f"primary key id {primary!r} is not among the keys")
        if keys[primary][1] is not KeyStatus.ACTIVE:
            raise KeyringError(f"primary key {primary!r} must have status 'active'")
        for kid, (material, _) in keys.items():
            if not _KID.fullmatch(kid):
                raise KeyringError(f"key id {kid!r} must be 1-64 characters of A-Z a-z 0-9 . _ : -")
            if len(material) != KEY_BYTES:
                raise KeyringError(f"key {kid!r} must be {KEY_BYTES} bytes (base64url of 32 random bytes)")
        self.primary = primary
        self._ciphers = {
            kid: AESGCM(material) for kid, (material, status) in keys.items() if status is not KeyStatus.DISABLED
        }
        self.statuses = {kid: status for kid, (_, status) in keys.items()}

    @classmethod
    def from_json(cls, document: str | bytes) -> Keyring:
        try:
            data = json.loads(document)
            primary = data["primary"]
            keys = {
                entry["kid"]: (_b64decode(entry["k"]), KeyStatus(entry.get("status", "active")))
                for entry in data["keys"]
            }
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise KeyringError(
                'a keyring must be JSON {"primary": kid, "keys": [{"kid", "k" (base64url), "status"}]}'
            ) from exc
        return cls(primary, keys)

    def encrypt(self, plaintext: bytes, *, purpose: str, context: str) -> bytes:
        kid = self.primary.encode("ascii")
        nonce = os.urandom(NONCE_BYTES)
        header = bytes([VERSION, len(kid)]) + kid
        sealed = self._ciphers[self.primary].encrypt(nonce, plaintext, _aad(header, purpose, context))
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, purpose: str, context: str) -> Decrypted:
        kid = key_id_of(ciphertext)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise KeyringError(f"no usable key {kid!r} (unknown or disabled)")
        header_len = 2 + len(kid)
        header = ciphertext[:header_len]
        nonce = ciphertext[header_len : header_len + NONCE_BYTES]
        try:
            plaintext = cipher.decrypt(nonce, ciphertext[header_len + NONCE_BYTES :], _aad(header, purpose, context))
        except InvalidTag as exc:
            raise KeyringError("ciphertext failed authentication") from exc
        return Decrypted(plaintext, kid)


def key_id_of(ciphertext: bytes) -> str:
    if len(ciphertext) < 2 or ciphertext[0] != VERSION:
        raise KeyringError("unknown ciphertext format")
    kid_len = ciphertext[1]
    if len(ciphertext) < 2 + kid_len + NONCE_BYTES + 16:
        raise KeyringError("ciphertext is truncated")
    try:
        return ciphertext[2 : 2 + kid_len].decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyringError("unknown ciphertext format") from exc


def new_keyring_document(kid: str) -> str:
    """A fresh keyring JSON document with one random active key (what ``mfa-gateway keygen`` writes)."""
    material = AESGCM.generate_key(bit_length=256)
    return json.dumps({"primary": kid, "keys": [{"kid": kid, "k": _b64encode(material), "status": "active"}]}, indent=2)


def _aad(header: bytes, purpose: str, context: str) -> bytes:
    return b"mfa-gateway\x00" + header + b"\x00" + purpose.encode() + b"\x00" + context.encode()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
