"""The gateway's key material (keyrings, JWT signing keys), rebuilt whenever the secret cache brings a new version.

Callers read ``keys.keyring`` at the moment they need it and never keep a copy, so a rotation reaches every request
within the cache TTL without a restart. A new version that does not parse (a malformed keyring) is refused by the
cache and the previous one stays in service. A literal or ``env:`` value (demo mode only) is fixed for the process's
life.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.secret import Secret
from mfa_gateway.core.tokens import SigningKeys
from mfa_gateway.secrets.cache import SecretUnavailable
from mfa_gateway.secrets.sources import SecretSources

T = TypeVar("T")
_KEYS = ("secrets.keyring", "secrets.session_keyring", "secrets.signing_keys")


class Keys:
    """The gateway's key material, kept current from the secret cache. Callers read through it, never keep a copy."""

    def __init__(self, sources: SecretSources) -> None:
        self._sources = sources
        self._keyring: Keyring | None = None
        self._session_keyring: Keyring | None = None
        self._signing_keys: SigningKeys | None = None
        self._own_session_keyring = "secrets.session_keyring" in sources.refs or "secrets.session_keyring" in (
            sources.fixed
        )
        # Each use checks that the secret may still be served (read on every request: bound once here).
        self._checks = {key: sources.cache.usability(sources.refs[key]) for key in _KEYS if key in sources.refs}
        self._watch(sources, "secrets.keyring", self._set_keyring)
        self._watch(sources, "secrets.signing_keys", self._set_signing_keys)
        if self._own_session_keyring:
            self._watch(sources, "secrets.session_keyring", self._set_session_keyring)

    @staticmethod
    def _watch(sources: SecretSources, key: str, build: Callable[[Secret[str]], object]) -> None:
        if key in sources.fixed:
            build(sources.fixed[key])
        else:
            sources.cache.subscribe(sources.refs[key], build)  # a value that does not parse is refused, not served

    def _set_keyring(self, value: Secret[str]) -> None:
        self._keyring = Keyring.from_json(value.reveal())

    def _set_session_keyring(self, value: Secret[str]) -> None:
        self._session_keyring = Keyring.from_json(value.reveal())

    def _set_signing_keys(self, value: Secret[str]) -> None:
        self._signing_keys = SigningKeys.from_json(value.reveal())

    @property
    def keyring(self) -> Keyring:
        return self._usable(self._keyring, "secrets.keyring")

    @property
    def session_keyring(self) -> Keyring:
        if not self._own_session_keyring:
            return self.keyring
        return self._usable(self._session_keyring, "secrets.session_keyring")

    @property
    def signing_keys(self) -> SigningKeys:
        return self._usable(self._signing_keys, "secrets.signing_keys")

    def _usable(self, value: T | None, key: str) -> T:
        """The built object while its secret may be served: a secret that failed closed (revoked access, deleted)
        or went stale beyond max_stale takes its keys out of service too (``SecretUnavailable``, a 503)."""
        if value is None:
            raise SecretUnavailable(key, "not loaded yet")
        check = self._checks.get(key)
        if check is not None:
            check()
        return value
