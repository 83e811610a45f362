"""A Vault/OpenBao Transit key as a cipher with the local keyring's shape, for TOTP secrets encrypted at rest.

Same calls as ``mfa_gateway.core.keyring.Keyring``: ``encrypt(plaintext, purpose=, context=) -> bytes``,
``decrypt(ciphertext, purpose=, context=) -> Decrypted(plaintext, kid)`` and ``primary`` (the kid new ciphertext
gets), so the MFA service can use either. Unlike the keyring, every call is a **blocking** network request: callers
run them off the event loop. Key material never leaves Vault.

Ciphertext layout (bytes)::

    0x02 | "vault:v<N>:<base64>"   (ASCII, exactly as Transit returns it)

The first byte tells it apart from local-keyring ciphertext (``0x01``). The kid is ``transit:<key>:v<N>``, so
``rekey`` counts enrollments per Transit key version as it counts local key ids, and ``rewrap`` moves a ciphertext to
the newest key version without the plaintext ever leaving Vault.

Binding to purpose and context: the keyring binds a ciphertext to its purpose and user with AES-GCM associated data.
Transit offers two ways, neither fit: ``context`` works only with keys created ``derived=true`` (one derived key per
user, a constraint on how operators create the key), and ``associated_data`` is silently ignored by OpenBao 2.7 (a
ciphertext made with it decrypts without it). So the binding goes *inside* the plaintext: Transit encrypts the
envelope ``magic | len+purpose | len+context | plaintext`` and decryption checks purpose and context in constant time.
Transit's AEAD authenticates the whole envelope, so a ciphertext copied to another user's row, or used for another
purpose, is refused as with the keyring; and this works with every Transit key type and with rewrap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import Callable
from typing import Any, TypeVar

from mfa_gateway.adapters.secrets.vault_auth import VaultSession
from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.core.keyring import Decrypted, KeyringError
from mfa_gateway.ports import PermanentSecretError, SecretBackendError, TotpCipher
from mfa_gateway.secrets.refs import TransitKeyRef

T = TypeVar("T")

VERSION = 2
_MAGIC = b"mfa-gateway/transit/1\x00"
_CIPHERTEXT = re.compile(r"vault:v(\d{1,9}):[A-Za-z0-9+/=]+")


def is_transit_ciphertext(data: bytes) -> bool:
    """Whether stored ciphertext was made by a Transit cipher (rather than the local keyring)."""
    return data[:1] == bytes([VERSION])


class TransitCipher:
    def __init__(self, session: VaultSession, key: TransitKeyRef) -> None:
        self.session = session
        self.key = key
        self._latest: int | None = None

    @property
    def primary(self) -> str:
        """The kid of the key version new ciphertext gets. The first use reads the key (blocking); encryptions and
        ``refresh`` keep it current after a rotation in Vault."""
        latest = self._latest if self._latest is not None else self.refresh()
        return self.kid(latest)

    @property
    def latest(self) -> int | None:
        """The newest key version seen so far, without asking Vault (None before ``refresh`` or an encryption)."""
        return self._latest

    def kid(self, version: int) -> str:
        return f"transit:{self.key.key}:v{version}"

    def key_id_of(self, ciphertext: bytes) -> str:
        return self.kid(_split(ciphertext)[1])

    def refresh(self) -> int:
        """Re-read the key's newest version (after ``bao write -f transit/keys/<key>/rotate``)."""

        def read(client: Any) -> Any:
            return client.secrets.transit.read_key(name=self.key.key, mount_point=self.key.mount)

        response = self.session.call(f"reading {self.key}", read)
        try:
            latest = int(response["data"]["latest_version"])
        except (KeyError, TypeError, ValueError):
            raise PermanentSecretError(
                f"{self.key}: the answer is not a Transit key; is {self.key.mount}/ Transit?"
            ) from None
        self._latest = latest
        return latest

    def encrypt(self, plaintext: bytes, *, purpose: str, context: str) -> bytes:
        encoded = base64.b64encode(_envelope(purpose, context) + plaintext).decode("ascii")

        def encrypt(client: Any) -> Any:
            return client.secrets.transit.encrypt_data(name=self.key.key, plaintext=encoded, mount_point=self.key.mount)

        return self._wrap(self.session.call(f"encrypting with {self.key}", encrypt))

    def decrypt(self, ciphertext: bytes, *, purpose: str, context: str) -> Decrypted:
        token, version = _split(ciphertext)

        def decrypt(client: Any) -> Any:
            return client.secrets.transit.decrypt_data(name=self.key.key, ciphertext=token, mount_point=self.key.mount)

        try:
            response = self.session.call(f"decrypting with {self.key}", decrypt)
        except PermanentSecretError as exc:
            if exc.status == 400:
                raise KeyringError(
                    f"{self.key} refused the ciphertext (it failed authentication, or its key version "
                    f"{version} is below the key's min_decryption_version)"
                ) from None
            raise
        try:
            envelope = base64.b64decode(response["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise KeyringError(f"{self.key}: the decryption answer is malformed") from None
        expected = _envelope(purpose, context)
        if not hmac.compare_digest(envelope[: len(expected)], expected):
            raise KeyringError("ciphertext failed authentication")
        return Decrypted(envelope[len(expected) :], self.kid(version))

    def rewrap(self, ciphertext: bytes) -> bytes:
        """The same plaintext under the key's newest version; the plaintext stays inside Vault."""
        token, _ = _split(ciphertext)

        def rewrap(client: Any) -> Any:
            return client.secrets.transit.rewrap_data(name=self.key.key, ciphertext=token, mount_point=self.key.mount)

        try:
            return self._wrap(self.session.call(f"rewrapping with {self.key}", rewrap))
        except PermanentSecretError as exc:
            if exc.status == 400:
                raise KeyringError(f"{self.key} refused to rewrap the ciphertext") from None
            raise

    def _wrap(self, response: Any) -> bytes:
        try:
            token = str(response["data"]["ciphertext"])
        except (KeyError, TypeError):
            raise KeyringError(f"{self.key}: the encryption answer is malformed") from None
        match = _CIPHERTEXT.fullmatch(token)
        if match is None:
            raise KeyringError(f"{self.key}: the encryption answer is malformed")
        self._latest = max(self._latest or 0, int(match[1]))
        return bytes([VERSION]) + token.encode("ascii")


def _split(ciphertext: bytes) -> tuple[str, int]:
    if not is_transit_ciphertext(ciphertext):
        raise KeyringError("unknown ciphertext format (not made by a Transit cipher)")
    try:
        token = ciphertext[1:].decode("ascii")
    except UnicodeDecodeError:
        raise KeyringError("unknown ciphertext format") from None
    match = _CIPHERTEXT.fullmatch(token)
    if match is None:
        raise KeyringError("unknown ciphertext format")
    return token, int(match[1])


def _envelope(purpose: str, context: str) -> bytes:
    parts = [purpose.encode("utf-8"), context.encode("utf-8")]
    if any(len(part) > 0xFFFF for part in parts):
        raise KeyringError("purpose and context must be shorter than 64 KiB")
    return _MAGIC + b"".join(len(part).to_bytes(2, "big") + part for part in parts)


class TransitTotpCipher(TotpCipher):
    """TOTP secrets encrypted by a Transit key, off the event loop; rows still under the local keyring (from before
    the switch to Transit) keep opening through ``keyring``, the keyring's own ``TotpCipher`` (one keyring path for
    both modes), and ``reencrypt`` moves them into Transit.

    Vault being unreachable is a ``DependencyUnavailable`` (503), never a failed code check.
    """

    def __init__(self, transit: TransitCipher, keyring: TotpCipher, purpose: str) -> None:
        self._transit = transit
        self._keyring = keyring  # opens (never makes) ciphertext from before the switch
        self._purpose = purpose

    @property
    def primary(self) -> str:
        """Never blocks: the version learnt at ``start`` (or ``rekey``), kept current by each encryption."""
        latest = self._transit.latest
        if latest is None:
            raise DependencyUnavailable("vault", "The encryption service is unavailable; try again shortly.")
        return self._transit.kid(latest)

    def key_id_of(self, ciphertext: bytes) -> str:
        if is_transit_ciphertext(ciphertext):
            return self._transit.key_id_of(ciphertext)
        return self._keyring.key_id_of(ciphertext)

    async def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
        return await self._call(self._transit.encrypt, plaintext, purpose=self._purpose, context=context)

    def opens_locally(self, ciphertext: bytes) -> bool:
        return not is_transit_ciphertext(ciphertext)

    async def decrypt(self, ciphertext: bytes, *, context: str) -> Decrypted:
        if not is_transit_ciphertext(ciphertext):
            return await self._keyring.decrypt(ciphertext, context=context)
        return await self._call(self._transit.decrypt, ciphertext, purpose=self._purpose, context=context)

    async def reencrypt(self, ciphertext: bytes, *, context: str) -> bytes:
        if is_transit_ciphertext(ciphertext):
            return await self._call(self._transit.rewrap, ciphertext)
        opened = await self._keyring.decrypt(ciphertext, context=context)
        return await self.encrypt(opened.plaintext, context=context)

    async def start(self) -> None:
        """Learn the key's newest version before the first request (a blocking read, off the event loop)."""
        await self._call(self._transit.refresh)

    @staticmethod
    async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except SecretBackendError as exc:
            raise DependencyUnavailable("vault", "The encryption service is unavailable; try again shortly.") from exc
