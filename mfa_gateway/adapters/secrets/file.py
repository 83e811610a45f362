"""``file:`` secrets: files rendered by Vault Agent, the Secrets Store CSI driver or External Secrets.

The change check is a keyed digest of the file's bytes rather than its mtime: a rewrite within one timestamp tick
is still seen, and since the key is random per process the version string says nothing about the value (a plain
hash of a short password could be brute-forced from a status page).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Fetched, PermanentSecretError, SecretProvider, TransientSecretError
from mfa_gateway.secrets.refs import SecretRef, SecretRefError, select_field

_PERMANENT_ERRNOS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class FileProvider(SecretProvider):
    """Reads the file at each call; files are small and local, so there is nothing worth keeping open."""

    def __init__(self) -> None:
        self._digest_key = os.urandom(32)

    def fetch(self, ref: SecretRef) -> Fetched:
        raw = self._read(ref)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PermanentSecretError(f"{ref}: the file is not UTF-8 text") from None
        try:
            value = select_field(text, ref.field, ref)
        except SecretRefError as exc:
            raise PermanentSecretError(str(exc)) from None
        return Fetched(Secret(value), self._version(raw), f"file {ref.location}")

    def current_version(self, ref: SecretRef) -> str:
        return self._version(self._read(ref))

    def _read(self, ref: SecretRef) -> bytes:
        try:
            return Path(ref.location).read_bytes()
        except _PERMANENT_ERRNOS as exc:
            raise PermanentSecretError(f"cannot read {ref}: {exc.strerror}; check the path and the mount") from None
        except OSError as exc:
            raise TransientSecretError(f"cannot read {ref}: {exc.strerror}") from None

    def _version(self, raw: bytes) -> str:
        return hashlib.blake2b(raw, key=self._digest_key, digest_size=8).hexdigest()
