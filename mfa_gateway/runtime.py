"""Builds the gateway's parts from validated settings (used by the CLI and by tests alike)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mfa_gateway import config, logs
from mfa_gateway.adapters.audit import FanoutAudit, JsonLinesAudit, StoreAudit
from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.adapters.users_file import UsersFile, UsersFileError
from mfa_gateway.core.users import User
from mfa_gateway.metrics import Metrics, MetricsAudit
from mfa_gateway.ports import AuditSink, EnrollmentStore, SharedState, TotpCipher
from mfa_gateway.secret_store import Keys, SecretsNotLoaded, SecretSources, open_sources, totp_cipher
from mfa_gateway.service.hashing import HashingPool
from mfa_gateway.service.login import LoginService, StoreHash, TokenPolicy
from mfa_gateway.service.mfa import MfaPolicy, MfaService
from mfa_gateway.service.pending import PendingChallenges
from mfa_gateway.service.revocations import RevocationView

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
    users: UsersFile | None
    revocations: RevocationView
    pending: PendingChallenges
    clock: Callable[[], float]
    metrics: Metrics
    cipher: TotpCipher
    _closers: list[Callable[[], object]] = field(default_factory=list)

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


def build_state(settings: config.Settings, sources: SecretSources) -> SharedState:
    if settings.state.backend == "memory":
        return MemorySharedState()
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
    return SqlEnrollmentStore(settings.store.url, password=password)


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
    cipher = totp_cipher(settings, sources, keys)
    closers: list[Callable[[], object]] = [sources.close]
    if audit is None:
        stream = _audit_stream(settings.audit.path)
        closers.append(stream.close)
        audit = FanoutAudit([stream, StoreAudit(store)]) if settings.audit.store else stream
    metrics = Metrics()
    audit = FanoutAudit([audit, MetricsAudit(metrics)])
    mfa = MfaService(
        store=store,
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
        users=users,
        revocations=RevocationView(state, clock),
        pending=pending,
        clock=clock,
        metrics=metrics,
        cipher=cipher,
        _closers=closers,
    )
