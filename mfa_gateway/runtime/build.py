"""The one composition root: the only place adapters are constructed and wired to the services.

Used by ``serve``, by the CLI's tools (check-config, secrets check, users, rekey) and by tests alike; each asks for the
parts it needs (``open_sources``, ``build_store``, ``build_state``, ``totp_cipher``) or the whole ``Runtime``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mfa_gateway import config, logs
from mfa_gateway.adapters.audit import FanoutAudit, JsonLinesAudit, StoreAudit
from mfa_gateway.adapters.ciphers.keyring import SECRET_PURPOSE, KeyringCipher
from mfa_gateway.adapters.secrets.file import FileProvider
from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.users_file import UsersFile, UsersFileError
from mfa_gateway.config.webauthn import relying_party
from mfa_gateway.core.secret import Secret
from mfa_gateway.core.users import User
from mfa_gateway.ports import AuditSink, EnrollmentStore, SecretProvider, SharedState, TotpCipher
from mfa_gateway.runtime.hashing import HashingPool
from mfa_gateway.runtime.metrics import Metrics, MetricsAudit
from mfa_gateway.secrets import sources as secret_sources
from mfa_gateway.secrets.cache import SecretStatus
from mfa_gateway.secrets.keys import Keys
from mfa_gateway.secrets.refs import TransitKeyRef
from mfa_gateway.secrets.sources import SecretsNotLoaded, SecretSources
from mfa_gateway.service.devices import DeviceService
from mfa_gateway.service.login import LoginService, StoreHash, TokenPolicy
from mfa_gateway.service.mfa import MfaPolicy, MfaService
from mfa_gateway.service.pending import PendingChallenges
from mfa_gateway.service.revocations import RevocationView
from mfa_gateway.service.session_records import SessionRecords

if TYPE_CHECKING:
    from mfa_gateway.adapters.secrets.vault_auth import VaultSession
    from mfa_gateway.service.webauthn import WebAuthnService

log = logging.getLogger("mfa_gateway")


@dataclass
class Runtime:
    settings: config.Settings
    keys: Keys
    secrets: SecretSources
    store: EnrollmentStore
    state: SharedState
    hashing: HashingPool
    audit: AuditSink
    mfa: MfaService
    login: LoginService | None
    webauthn: WebAuthnService | None
    """Security keys and passkeys; None when ``webauthn`` is off (disabled, or no origin to serve)."""
    devices: DeviceService
    users: UsersFile | None
    revocations: RevocationView
    sessions: SessionRecords
    """The account page's list of sessions: recorded where a session is issued, never read on a request."""
    pending: PendingChallenges
    clock: Callable[[], float]
    metrics: Metrics
    cipher: TotpCipher
    _closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def secrets_ready(self) -> bool:
        """Every required secret is usable (readiness; liveness never depends on it)."""
        return self.secrets.cache.ready

    def secret_status(self) -> list[tuple[str, SecretStatus]]:
        """Each secret's state named by its config key, for metrics and the admin listener. Holds no value."""
        return self.secrets.statuses()

    async def refresh_secrets(self) -> None:
        """Re-read every secret now (SIGHUP, the admin listener's refresh endpoint)."""
        await self.secrets.cache.refresh()

    async def run_secret_refresh(self, stop: asyncio.Event) -> None:
        """Refresh secrets in the background, ahead of their TTL, until ``stop`` is set."""
        await self.secrets.cache.run(stop)

    def admin_token(self) -> Secret[str]:
        """The admin listener's bearer token (``SecretUnavailable`` while it cannot be served)."""
        return self.secrets.value("admin.token")

    async def close(self) -> None:
        await self.audit.flush()  # events of callers that were cancelled while their row was being written
        await self.state.close()
        await self.store.close()
        self.hashing.close()
        for closer in self._closers:
            closer()


def longest_session(settings: config.Settings) -> float:
    """How long a session or JWT issued now could still be presented: a user's revocation is kept that long."""
    return max(settings.session.ttl, settings.session.jwt_ttl)


def _audit_stream(path: str) -> JsonLinesAudit:
    try:
        return JsonLinesAudit.open(path, logs.redact)
    except OSError as exc:  # told like a config problem (exit 2), not a traceback
        reason = exc.strerror or type(exc).__name__
        raise config.ConfigError(
            [f"audit.path: cannot append to {path}: {reason}; fix the path or its permissions"]
        ) from None


def vault_session(settings: config.Settings) -> VaultSession | None:
    """One authenticated Vault session for every Vault use (KV references, Transit), or None without Vault."""
    vault = settings.secrets.vault
    if vault is None:
        return None
    from mfa_gateway.adapters.secrets.vault_auth import (  # hvac only when Vault is configured
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


@dataclass
class WiredSources(SecretSources):
    """The sources as the composition root opened them: with the one Vault session (KV references and Transit
    share its token) and the Transit key, for the TOTP cipher."""

    vault: VaultSession | None = None
    transit: TransitKeyRef | None = None


def open_sources(
    settings: config.Settings,
    *,
    clock: Callable[[], float] = time.time,
    environ: Mapping[str, str] = os.environ,
    providers: Mapping[str, SecretProvider] | None = None,
) -> WiredSources:
    """The config's secrets, parsed once and registered with a cache over the providers they need (nothing is read
    yet: see ``load_now``)."""
    configured = secret_sources.read_config(settings, environ)
    vault = vault_session(settings)
    if providers is None:
        providers = providers_for(settings, configured.schemes, vault)
    closers = [vault.close] if vault is not None else []
    opened = secret_sources.open_sources(settings, configured, providers, clock=clock, closers=closers)
    return WiredSources(opened.cache, opened.refs, opened.fixed, opened.closers, vault, configured.transit)


def totp_cipher(sources: WiredSources, keys: Keys) -> TotpCipher:
    """The cipher for TOTP secrets: the keyring, or Vault Transit when ``secrets.totp_cipher`` names a key (rows
    from before the switch still open through the keyring cipher)."""
    keyring = KeyringCipher(lambda: keys.keyring)
    if sources.transit is None:
        return keyring
    assert sources.vault is not None  # config validation: transit: needs secrets.vault, so open_sources made a session
    from mfa_gateway.adapters.ciphers.transit import TransitCipher, TransitTotpCipher

    return TransitTotpCipher(TransitCipher(sources.vault, sources.transit), keyring, SECRET_PURPOSE)


def build_state(settings: config.Settings, sources: SecretSources) -> SharedState:
    if settings.state.backend == "memory":
        return MemorySharedState()
    from mfa_gateway.adapters.state.redis import RedisSharedState  # redis-py is loaded only when state is Redis

    state = settings.state
    password = sources.password("state.password") if state.password else None
    sentinel_password = sources.password("state.sentinel_password") if state.sentinel_password else None
    return RedisSharedState(
        state.url,
        password=password,
        prefix=state.key_prefix,
        socket_timeout=state.socket_timeout,
        sentinels=state.sentinels,  # (host, port) pairs, parsed by config
        sentinel_master=state.sentinel_master,
        sentinel_password=sentinel_password,
        sentinel_tls=state.sentinel_tls,
    )


def _hash_store(users: UsersFile) -> StoreHash:
    """Re-hashed passwords go back to the users file (atomically, under its lock); a file that cannot be written
    (a read-only mount) is reported once and the process stops trying."""

    async def store(user: User, new_hash: str) -> bool:
        try:
            await asyncio.to_thread(users.replace_hash, user.username, user.password_hash, new_hash)
        except (OSError, UsersFileError) as exc:
            log.warning(
                "identity.users_file: cannot store passwords re-hashed to the current hashing settings (%s); users "
                "whose hashes were made with older settings keep them until 'mfa-gateway users add' sets them again",
                getattr(exc, "strerror", None) or type(exc).__name__,
            )
            return False
        return True

    return store


def build_store(settings: config.Settings, sources: SecretSources) -> SqlEnrollmentStore:
    password = sources.password("store.password") if settings.store.password else None
    return SqlEnrollmentStore(settings.store.url, password=password, pool_size=settings.store.pool_size)


def build_runtime(
    settings: config.Settings,
    *,
    clock: Callable[[], float] = time.time,
    state: SharedState | None = None,
    audit: AuditSink | None = None,
    require_secrets: bool = True,
) -> Runtime:
    """Everything the gateway needs. With ``require_secrets`` false (``serve``), secrets that cannot be read yet
    leave the gateway unready (503 where they are needed) while the background refresh keeps trying."""
    sources = open_sources(settings, clock=clock)
    try:
        sources.load_now()
    except SecretsNotLoaded as exc:
        if require_secrets:
            raise
        log.error("starting unready: secrets not loaded: %s", exc)
    keys = Keys(sources)
    store = build_store(settings, sources)
    state = state or build_state(settings, sources)
    hashing = HashingPool(settings.hashing.params(), settings.hashing.max_concurrency)
    cipher = totp_cipher(sources, keys)
    closers: list[Callable[[], object]] = [sources.close]
    if audit is None:
        stream = _audit_stream(settings.audit.path)
        closers.append(stream.close)
        audit = FanoutAudit([stream, StoreAudit(store)]) if settings.audit.store else stream
    metrics = Metrics()
    audit = FanoutAudit([audit, MetricsAudit(metrics)])
    mfa = MfaService(
        store=store,
        credentials=store,
        state=state,
        hashing=hashing,
        audit=audit,
        cipher=cipher,
        clock=clock,
        policy=MfaPolicy(
            issuer=settings.totp.issuer,
            params=settings.totp.params(),
            window=settings.totp.window,
            backup_code_count=settings.backup_codes.count,
            user_limits=settings.limits.user.limits(),
            ip_limits=settings.limits.ip.limits(),
        ),
    )
    pending = PendingChallenges(state, lambda: keys.keyring, clock, settings.challenge_ttl)
    rp = relying_party(settings)
    webauthn = None
    if rp is not None:
        from mfa_gateway.service.webauthn import WebAuthnService  # py_webauthn is loaded only when WebAuthn is on

        webauthn = WebAuthnService(
            rp=rp,
            credentials=store,
            state=state,
            mfa=mfa,
            audit=audit,
            clock=clock,
            user_limits=settings.limits.user.limits(),
            ip_limits=settings.limits.ip.limits(),
        )
    users_file = settings.identity.users_file
    users = UsersFile(users_file) if settings.identity.source == "builtin" and users_file else None
    if users is not None:
        users.all()  # a malformed users file stops the start (exit 2), not the first login
    login = None
    if users is not None:
        lookup: Callable[[str], User | None] = users.get
        login = LoginService(
            users=lookup,
            mfa=mfa,
            state=state,
            pending=pending,
            hashing=hashing,
            audit=audit,
            signing_keys=lambda: keys.signing_keys,
            clock=clock,
            policy=TokenPolicy(
                issuer=settings.session.jwt_issuer,
                audience=settings.session.jwt_audience,
                jwt_ttl=settings.session.jwt_ttl,
                session_ttl=settings.session.ttl,
            ),
            login_limits=settings.limits.user.limits(),
            ip_limits=settings.limits.ip.limits(),
            store_hash=_hash_store(users),
        )
    revocations = RevocationView(state, clock)
    return Runtime(
        settings=settings,
        keys=keys,
        secrets=sources,
        store=store,
        state=state,
        hashing=hashing,
        audit=audit,
        mfa=mfa,
        login=login,
        webauthn=webauthn,
        devices=DeviceService(store, audit, clock, keep=settings.trusted_devices.max_per_user),
        users=users,
        revocations=revocations,
        sessions=SessionRecords(store, revocations, audit, clock, longest_session=longest_session(settings)),
        pending=pending,
        clock=clock,
        metrics=metrics,
        cipher=cipher,
        _closers=closers,
    )
