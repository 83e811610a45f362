"""The gateway's secrets at run time: one cache for every secret reference in the config, and the key material
built from it.

``SecretSources`` owns the ``SecretCache`` and the providers the config needs (files always; Vault / OpenBao and AWS
Secrets Manager when a reference uses them). ``Keys`` holds the keyrings and signing keys, rebuilt whenever the cache
brings a new version: callers read ``keys.keyring`` at the moment they need it and never keep a copy, so a rotation
reaches every request within the cache TTL without a restart. A new version that does not parse (a malformed keyring)
is refused by the cache and the previous one stays in service.

A literal or ``env:`` value (demo mode only) is fixed for the process's life.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from mfa_gateway import config, logs, secret_refs
from mfa_gateway.adapters.secrets.file import FileProvider
from mfa_gateway.core.keyring import Keyring
from mfa_gateway.core.references import SecretRef
from mfa_gateway.core.secret import Secret
from mfa_gateway.core.tokens import SigningKeys
from mfa_gateway.ports import Credential, Fetched, FixedPassword, PasswordSource, SecretProvider, TotpCipher
from mfa_gateway.service.ciphers import SECRET_PURPOSE, KeyringCipher
from mfa_gateway.service.secrets import SecretCache, SecretUnavailable

if TYPE_CHECKING:
    from mfa_gateway.adapters.secrets.vault_auth import VaultSession

T = TypeVar("T")
OPTIONAL = frozenset({"admin.token"})


class SecretsNotLoaded(Exception):
    """Required secrets could not be read (CLI tools stop with exit code 2); messages name references only."""


@dataclass
class SecretSources:
    cache: SecretCache
    refs: dict[str, SecretRef] = field(default_factory=dict)  # config key -> reference
    fixed: dict[str, Secret[str]] = field(default_factory=dict)  # config key -> demo-mode literal or env value
    vault: VaultSession | None = None  # the one Vault session (KV references and Transit share its token)

    def value(self, key: str) -> Secret[str]:
        """The current value of a config key's secret (``SecretUnavailable`` while it cannot be served)."""
        if key in self.fixed:
            return self.fixed[key]
        return self.cache.get(self.refs[key])

    def alternatives(self, key: str) -> list[Secret[str]]:
        """Current value, then the previous one (AWSPREVIOUS) where the backend keeps it: for retried logins."""
        if key in self.fixed:
            return [self.fixed[key]]
        return self.cache.alternatives(self.refs[key])

    def password(self, key: str) -> PasswordSource:
        """A Redis or database password, asked at every new connection (rotation without restart)."""
        if key in self.fixed:
            return FixedPassword(self.fixed[key].reveal())
        return _CachedPassword(self, key)

    def close(self) -> None:
        """Release the backends' connections (the Vault session, the AWS client)."""
        for provider in self.cache.providers:
            provider.close()
        if self.vault is not None:
            self.vault.close()

    def load_now(self) -> None:
        """Read every secret in this thread (start-up, CLI tools); ``SecretsNotLoaded`` lists what failed."""
        failures = self.cache.load_now()
        if failures:
            raise SecretsNotLoaded("; ".join(f"{ref}: {reason}" for ref, reason in sorted(failures.items())))


class _CachedPassword(PasswordSource):
    """A login from the secret cache: current then previous value, re-read after a refusal (rate-limited, so a
    misconfigured password cannot turn every request into a Vault or AWS call)."""

    REFRESH_EVERY = 5.0

    def __init__(self, sources: SecretSources, key: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._sources = sources
        self._key = key
        self._clock = clock
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Future[None] | None = None

    def candidates(self) -> Sequence[Credential]:
        """Already redacted from logs: every value, AWSPREVIOUS included, was registered as it was read."""
        return [_credential(value.reveal()) for value in self._sources.alternatives(self._key)]

    async def refresh(self) -> None:
        """Connections refused together share one re-read; a later refusal within REFRESH_EVERY reuses its result."""
        now = self._clock()
        running = self._refreshing
        if running is None or (running.done() and now - self._refreshed_at >= self.REFRESH_EVERY):
            self._refreshed_at = now
            running = self._refreshing = asyncio.ensure_future(
                self._sources.cache.refresh(self._sources.refs[self._key])
            )
        await asyncio.shield(running)


def _credential(value: str) -> Credential:
    """A plain password, or a JSON secret with ``password`` (and ``username``), as AWS stores database logins."""
    if value.startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("password"), str):
            username = document.get("username")
            return Credential(username if isinstance(username, str) else None, document["password"])
    return Credential(None, value)


def vault_session(settings: config.Settings) -> VaultSession | None:
    """One authenticated Vault session for every Vault use (KV references, Transit), or None without Vault."""
    vault = settings.secrets.vault
    if vault is None:
        return None
    from mfa_gateway.adapters.secrets.vault_auth import (
        AppRoleAuth,
        KubernetesAuth,
        TokenFileAuth,
        VaultAuth,
        VaultOptions,
        VaultSession,
    )

    auth: VaultAuth
    if vault.auth == "approle" and vault.approle is not None:
        auth = AppRoleAuth(vault.approle.role_id_file, vault.approle.secret_id_file, vault.approle.mount)
    elif vault.auth == "kubernetes" and vault.kubernetes is not None:
        auth = KubernetesAuth(vault.kubernetes.role, vault.kubernetes.token_file, vault.kubernetes.mount)
    else:
        assert vault.token_file is not None  # config validation
        auth = TokenFileAuth(vault.token_file)
    return VaultSession(VaultOptions(vault.address, auth, vault.namespace, vault.ca_cert, vault.timeout))


def providers_for(
    settings: config.Settings, schemes: set[str], vault: VaultSession | None
) -> dict[str, SecretProvider]:
    """The providers the config's references need (importing hvac and boto3 only when used)."""
    providers: dict[str, SecretProvider] = {"file": FileProvider()}
    if "vault" in schemes and vault is not None:
        from mfa_gateway.adapters.secrets.vault import VaultProvider

        providers["vault"] = VaultProvider(vault)
    if "awssm" in schemes:
        from mfa_gateway.adapters.secrets.awssm import AwsOptions, AwsSecretsProvider

        aws = settings.secrets.aws or config.Aws()
        providers["awssm"] = AwsSecretsProvider(
            AwsOptions(aws.region, aws.endpoint_url, aws.connect_timeout, aws.read_timeout, aws.max_attempts)
        )
    return providers


def totp_cipher(settings: config.Settings, sources: SecretSources, keys: Keys) -> TotpCipher:
    """The cipher for TOTP secrets: the keyring, or Vault Transit when ``secrets.totp_cipher`` names a key (rows
    from before the switch still open through the keyring cipher)."""
    keyring = KeyringCipher(lambda: keys.keyring)
    reference = settings.secrets.totp_cipher
    if reference is None:
        return keyring
    assert sources.vault is not None  # config validation: transit: needs secrets.vault, so open_sources made a session
    from mfa_gateway.adapters.secrets.transit import TransitCipher, TransitTotpCipher

    transit = TransitCipher(sources.vault, secret_refs.parse_transit(reference))
    return TransitTotpCipher(transit, keyring, SECRET_PURPOSE)


def open_sources(
    settings: config.Settings,
    *,
    clock: Callable[[], float] = time.time,
    environ: Mapping[str, str] = os.environ,
    providers: Mapping[str, SecretProvider] | None = None,
) -> SecretSources:
    """A cache with every secret reference of the config registered (nothing is read yet: see ``load_now``)."""
    refs: dict[str, SecretRef] = {}
    fixed: dict[str, Secret[str]] = {}
    for key in config.SECRET_KEYS:
        value = config.secret_value(settings, key)
        if value is None:
            continue
        parsed = secret_refs.parse(value)
        if parsed.ref is not None:
            refs[key] = parsed.ref
        else:
            fixed[key] = config.fixed_secret(parsed, environ)
            logs.register_secret(fixed[key].reveal())
    cache_settings = settings.secrets.cache
    vault = vault_session(settings)
    if providers is None:
        providers = providers_for(settings, {ref.scheme for ref in refs.values()}, vault)
    cache = SecretCache(
        {scheme: _redacting(provider) for scheme, provider in providers.items()},
        clock=clock,
        ttl=cache_settings.ttl,
        jitter=cache_settings.jitter,
        max_stale=cache_settings.max_stale,
        refresh_ahead=cache_settings.refresh_ahead,
    )
    for key, ref in refs.items():
        cache.register(ref, required=key not in OPTIONAL)  # the admin token does not decide readiness
    return SecretSources(cache, refs, fixed, vault)


class _Redacting(SecretProvider):
    """A provider whose every value is registered with the log redactor the moment it is read, before the cache
    holds it: each rotation's new value, and values the cache refuses (a malformed keyring) too."""

    def __init__(self, inner: SecretProvider) -> None:
        self.inner = inner

    def fetch(self, ref: SecretRef) -> Fetched:
        return _registered(self.inner.fetch(ref))

    def current_version(self, ref: SecretRef) -> str | None:
        return self.inner.current_version(ref)

    def close(self) -> None:
        self.inner.close()


class _RedactingWithPrevious(_Redacting):
    """The same for a backend that keeps the previous value (AWSPREVIOUS): still a valid password, so redacted too."""

    def previous(self, ref: SecretRef) -> Fetched | None:
        previous = self.inner.previous(ref)
        return _registered(previous) if previous is not None else None


def _redacting(provider: SecretProvider) -> SecretProvider:
    """Only a backend with a previous value gets ``previous``: the cache skips the thread hop for the others."""
    if type(provider).previous is SecretProvider.previous:
        return _Redacting(provider)
    return _RedactingWithPrevious(provider)


def _registered(fetched: Fetched) -> Fetched:
    logs.register_secret(fetched.value.reveal())
    return fetched


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
        ref = self._sources.refs.get(key)
        if ref is not None:
            self._sources.cache.require_usable(ref)
        return value
