"""The secrets a config names, opened: every reference registered with one cache.

``read_config`` takes the secret values config loading parsed once (``Settings.secret_values``): references,
demo-mode literal or ``env:`` values (read now, fixed for the process's life), and the Transit key. ``open_sources``
puts the references into a ``SecretCache`` served by the providers it is given: the composition root
(``mfa_gateway.runtime.build``) constructs those (files always; Vault / OpenBao and AWS Secrets Manager when a
reference uses them), so this module imports no adapter. Every provider is wrapped so that each value it reads is
registered with the log redactor before the cache holds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mfa_gateway import config, logs
from mfa_gateway.core.secret import Secret
from mfa_gateway.ports import Credential, Fetched, FixedPassword, PasswordSource, SecretProvider
from mfa_gateway.secrets.cache import SecretCache, SecretStatus
from mfa_gateway.secrets.refs import SecretRef, TransitKeyRef

OPTIONAL = frozenset({"admin.token"})


class SecretsNotLoaded(Exception):
    """Required secrets could not be read (CLI tools stop with exit code 2); messages name references only."""


@dataclass
class SecretSources:
    cache: SecretCache
    refs: dict[str, SecretRef] = field(default_factory=dict)  # config key -> reference
    fixed: dict[str, Secret[str]] = field(default_factory=dict)  # config key -> demo-mode literal or env value
    closers: list[Callable[[], object]] = field(default_factory=list)  # backends' sessions (the Vault one)

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

    def statuses(self) -> list[tuple[str, SecretStatus]]:
        """Each cached secret's state with the config key naming it ("other" if none does). Holds no value."""
        names = {str(ref): key for key, ref in self.refs.items()}
        return [(names.get(status.ref, "other"), status) for status in self.cache.status()]

    def password(self, key: str) -> PasswordSource:
        """A Redis or database password, asked at every new connection (rotation without restart)."""
        if key in self.fixed:
            return FixedPassword(self.fixed[key].reveal())
        return _CachedPassword(self, key)

    def close(self) -> None:
        """Release the backends' connections (the Vault session, the AWS client)."""
        for provider in self.cache.providers:
            provider.close()
        for closer in self.closers:
            closer()

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


@dataclass(frozen=True, slots=True)
class ConfiguredSecrets:
    """The config's secret values as the runtime uses them: the parsed references and Transit key, and the fixed
    values read."""

    refs: Mapping[str, SecretRef]
    """Config key -> reference."""
    fixed: Mapping[str, Secret[str]]
    """Config key -> demo-mode literal or ``env:`` value, read now."""
    transit: TransitKeyRef | None
    """``secrets.totp_cipher``: the Transit key that encrypts TOTP secrets, if any."""

    @property
    def schemes(self) -> set[str]:
        """The backends the references need (``file``, ``vault``, ``awssm``)."""
        return {ref.scheme for ref in self.refs.values()}


def read_config(settings: config.Settings, environ: Mapping[str, str] = os.environ) -> ConfiguredSecrets:
    """The secret values config loading parsed (``Settings.secret_values``), demo-mode ``env:`` values read from
    ``environ`` now. Nothing is parsed here."""
    values = settings.secret_values
    fixed: dict[str, Secret[str]] = {}
    for key, parsed in values.fixed.items():
        fixed[key] = config.fixed_secret(parsed, environ)
        logs.register_secret(fixed[key].reveal())
    return ConfiguredSecrets(dict(values.refs), fixed, values.transit)


def open_sources(
    settings: config.Settings,
    configured: ConfiguredSecrets,
    providers: Mapping[str, SecretProvider],
    *,
    clock: Callable[[], float] = time.time,
    closers: Sequence[Callable[[], object]] = (),
) -> SecretSources:
    """A cache with every secret reference of the config registered (nothing is read yet: see ``load_now``)."""
    cache_settings = settings.secrets.cache
    cache = SecretCache(
        {scheme: _redacting(provider) for scheme, provider in providers.items()},
        clock=clock,
        ttl=cache_settings.ttl,
        jitter=cache_settings.jitter,
        max_stale=cache_settings.max_stale,
        refresh_ahead=cache_settings.refresh_ahead,
    )
    for key, ref in configured.refs.items():
        cache.register(ref, required=key not in OPTIONAL)  # the admin token does not decide readiness
    return SecretSources(cache, dict(configured.refs), dict(configured.fixed), list(closers))


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
