"""The local keyring as a ``TotpCipher`` (the default; the Vault Transit one is ``adapters.ciphers.transit``).

Keyring operations are local AES-GCM, microseconds: they run on the event loop. The keyring is read through a
callable at each use, so a rotated keyring applies at once.
"""

from __future__ import annotations

from collections.abc import Callable

from mfa_gateway.core.keyring import Decrypted, Keyring, key_id_of
from mfa_gateway.ports import TotpCipher

SECRET_PURPOSE = "totp-secret"  # noqa: S105 - a keyring purpose label, not a secret


class KeyringCipher(TotpCipher):
    def __init__(self, keyring: Callable[[], Keyring]) -> None:
        self._keyring = keyring

    @property
    def primary(self) -> str:
        return self._keyring().primary

    def key_id_of(self, ciphertext: bytes) -> str:
        return key_id_of(ciphertext)

    async def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
        return self._keyring().encrypt(plaintext, purpose=SECRET_PURPOSE, context=context)

    async def decrypt(self, ciphertext: bytes, *, context: str) -> Decrypted:
        return self._keyring().decrypt(ciphertext, purpose=SECRET_PURPOSE, context=context)

    async def reencrypt(self, ciphertext: bytes, *, context: str) -> bytes:
        keyring = self._keyring()
        opened = keyring.decrypt(ciphertext, purpose=SECRET_PURPOSE, context=context)
        return keyring.encrypt(opened.plaintext, purpose=SECRET_PURPOSE, context=context)
