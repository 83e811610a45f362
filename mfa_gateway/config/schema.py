"""The gateway's configuration: one YAML file, validated once into frozen settings.

Every key, its default and its meaning are documented in README.md ("Configuration") and in
config/gateway.example.yaml. Errors name the key and the fix; the CLI exits with code 2 on any of them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mfa_gateway import secret_refs
from mfa_gateway.core.hashing import Argon2Params
from mfa_gateway.core.model import TOTP_DIGITS, TOTP_PERIODS, AttemptLimits, TotpAlgorithm, TotpParams
from mfa_gateway.core.policy import Action, Policy, PolicyError, Rule
from mfa_gateway.core.secret import Secret

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` are lines naming a key and the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Section):
    host: str = Field("127.0.0.1", description="an address to bind, e.g. 0.0.0.0 in a container")
    port: int = Field(9090, ge=1, le=65535, description="a TCP port between 1 and 65535")


class Totp(_Section):
    issuer: str = Field("mfa-gateway", min_length=1, max_length=64, description="the name authenticator apps show")
    algorithm: TotpAlgorithm = Field(TotpAlgorithm.SHA1, description="one of SHA1, SHA256, SHA512")
    digits: int = Field(6, ge=TOTP_DIGITS.start, le=TOTP_DIGITS.stop - 1, description="6, 7 or 8")
    period: int = Field(
        30,
        ge=TOTP_PERIODS.start,
        le=TOTP_PERIODS.stop - 1,
        description=f"seconds per code, {TOTP_PERIODS.start}-{TOTP_PERIODS.stop - 1} (30 is what every app supports)",
    )
    window: int = Field(1, ge=0, le=2, description="time steps accepted either side of now, 0-2")

    def params(self) -> TotpParams:
        return TotpParams(self.algorithm, self.digits, self.period)

    @field_validator("issuer")
    @classmethod
    def _issuer_without_colon(cls, issuer: str) -> str:
        if ":" in issuer:
            raise ValueError(
                "must not contain ':' (authenticator labels are issuer:account, so apps would split the name there);"
                " write e.g. 'Example Corp' instead"
            )
        return issuer


class BackupCodes(_Section):
    count: int = Field(10, ge=5, le=20, description="how many codes a set has, 5-20")


class Hashing(_Section):
    time_cost: int = Field(3, ge=1, le=10, description="Argon2id passes, 1-10")
    memory_kib: int = Field(65536, ge=8192, le=1048576, description="Argon2id memory in KiB, 8192-1048576")
    parallelism: int = Field(4, ge=1, le=16, description="Argon2id lanes, 1-16")
    max_concurrency: int = Field(2, ge=1, le=64, description="hashes computed at once per process, 1-64")

    def params(self) -> Argon2Params:
        return Argon2Params(self.time_cost, self.memory_kib, self.parallelism)


class Limit(_Section):
    max_failures: int = Field(5, ge=1, le=1000, description="failures within `window` that lock, 1-1000")
    window: float = Field(300, gt=0, le=86400, description="seconds over which failures are counted")
    lockout: float = Field(60, gt=0, le=86400, description="seconds of the first lockout (doubles each time)")
    max_lockout: float = Field(3600, gt=0, le=604800, description="the longest lockout in seconds")
    hard_lock_after: int = Field(
        100, ge=0, le=100, description="consecutive failures that lock until an admin reset, 1-100 (0 = off)"
    )

    def limits(self) -> AttemptLimits:
        return AttemptLimits(self.max_failures, self.window, self.lockout, self.max_lockout, self.hard_lock_after)

    @model_validator(mode="after")
    def _lockout_within_max(self) -> Limit:
        if self.lockout > self.max_lockout:
            raise ValueError("lockout must not exceed max_lockout; raise max_lockout or lower lockout")
        return self


class IpLimit(Limit):
    """Per client address: looser than per user (many users may share one NAT address), and no hard lock."""

    max_failures: int = Field(20, ge=1, le=1000, description="failures within `window` that lock, 1-1000")
    hard_lock_after: int = Field(0, ge=0, le=100, description="consecutive failures that lock until reset (0 = off)")


class Limits(_Section):
    user: Limit = Limit()
    ip: IpLimit = IpLimit()


def _unmapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 network it stands for: client and proxy
    addresses are judged in their IPv4 form, so the mapped form would never match."""
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, AfterValidator(_unmapped)]


class UpstreamLogin(_Section):
    login_path: str = Field("/login", pattern=r"^/", description="the app's login form target, e.g. /login")
    username_field: str = Field("username", min_length=1, description="the login form's user name field")
    session_cookie: str = Field(min_length=1, description="the name of the app's session cookie, e.g. JSESSIONID")
    success_status: tuple[int, ...] = Field(
        (301, 302, 303), description="statuses of a successful login response, e.g. [302, 303]"
    )
    max_body: int = Field(65536, ge=1024, le=1048576, description="largest login request/response body held, bytes")
    whoami_path: str | None = Field(
        None, pattern=r"^/", description="an app URL that answers JSON naming the signed-in user, e.g. /api/me"
    )
    whoami_field: str = Field("user", min_length=1, description="the JSON field of whoami_path's answer with the user")


class Identity(_Section):
    source: Literal["trusted_header", "builtin", "upstream_login"] = Field(
        "builtin", description="where the first factor comes from: trusted_header, builtin or upstream_login"
    )
    header: str = Field("X-Forwarded-User", min_length=1, description="the header carrying the user name")
    email_header: str | None = Field(None, description="an optional header carrying the user's email")
    groups_header: str | None = Field(None, description="an optional header carrying the user's groups")
    users_file: Path | None = Field(
        Path("users.yaml"), description="the builtin users file (mfa-gateway users add NAME)"
    )
    upstream_login: UpstreamLogin | None = Field(
        None, description="login interception settings (source upstream_login)"
    )


class Upstream(_Section):
    url: str | None = Field(None, pattern=r"^https?://[^/?#]+$", description="http(s)://HOST:PORT of the app, no path")
    connect_timeout: float = Field(5, gt=0, le=300, description="seconds to connect to the app")
    read_timeout: float = Field(60, gt=0, le=3600, description="seconds the app may stay silent mid-response")
    max_connections: int = Field(256, ge=1, le=10000, description="pooled keep-alive connections to the app")
    keepalive_timeout: float = Field(15, gt=0, le=300, description="idle seconds before a pooled connection closes")
    preserve_host: bool = Field(True, description="true: send the client's Host header to the app")


class PolicyRule(_Section):
    name: str | None = Field(None, description="a label for logs and errors")
    action: Literal["bypass", "identity", "mfa", "deny"] = Field(description="bypass, identity, mfa or deny")
    hosts: tuple[str, ...] = Field((), description="host names, exact or *.example.com; empty matches all")
    path: str | None = Field(None, description="a regex matched from the start of the normalised path")
    methods: tuple[str, ...] = Field((), description="HTTP methods; empty matches all")
    networks: tuple[Network, ...] = Field((), description="client CIDRs; empty matches all")
    max_age: float | None = Field(None, gt=0, description="mfa rules: seconds since the last MFA, e.g. 600")


class PolicyConfig(_Section):
    default: Literal["bypass", "identity", "mfa", "deny"] = Field("mfa", description="the action when no rule matches")
    case_insensitive_paths: bool = Field(
        False, description="true if the app treats /Admin and /admin alike or runs on Windows (see Path normalisation)"
    )
    rules: tuple[PolicyRule, ...] = Field((), description="ordered rules; the first match wins")

    def compile(self) -> Policy:
        return Policy(
            [
                Rule(
                    name=rule.name or f"rule {index}",
                    action=Action(rule.action),
                    hosts=rule.hosts,
                    path=rule.path,
                    methods=frozenset(m.upper() for m in rule.methods),
                    networks=rule.networks,
                    max_age=rule.max_age,
                )
                for index, rule in enumerate(self.rules)
            ],
            Action(self.default),
        )

    @model_validator(mode="after")
    def _compiles(self) -> PolicyConfig:
        try:
            self.compile()
        except PolicyError as exc:
            raise ValueError(f"policy.rules: {exc}") from exc
        return self


class IdentityHeaders(_Section):
    user: tuple[str, ...] = Field(("Remote-User", "X-Auth-Request-User", "X-Auth-User"), description="header names")
    email: tuple[str, ...] = Field(("Remote-Email", "X-Auth-Request-Email"), description="header names")
    groups: tuple[str, ...] = Field(("Remote-Groups",), description="header names")

    def all(self) -> tuple[str, ...]:
        return (*self.user, *self.email, *self.groups)


class Redirects(_Section):
    allowed_hosts: tuple[str, ...] = Field(
        (), description="hosts an absolute rd/next may point to, e.g. [*.example.com]"
    )


class ForwardAuth(_Section):
    dialect: Literal["auto", "nginx", "traefik"] = Field(
        "auto",
        description="auto, nginx (X-Original-URL/Method only) or traefik (X-Forwarded-Method/Proto/Host/Uri only)",
    )


class Enrollment(_Section):
    unenrolled: Literal["enroll", "deny"] = Field(
        "enroll", description="a signed-in user without MFA on an mfa route: enroll or deny"
    )


def _password_in(url: str) -> str | None:
    """Where ``url`` carries a password as redis-py and requests read it (``urlsplit``): ``user:password@``, even
    with an empty password, or a query parameter whose name holds ``password`` (``password=``, ``ssl_password=``,
    any case). None if nowhere."""
    parts = urlsplit(url)
    if parts.password is not None:
        return "user:password@"
    return next((f"?{name}=" for name, _ in parse_qsl(parts.query) if "password" in name.lower()), None)


def _refuse_password_in(url: str, key: str) -> None:
    """Secrets come from secret references only, never from the config file: ``key`` is where this URL's password
    belongs instead."""
    where = _password_in(url)
    if where is None:
        return
    if where.lower() in ("user:password@", "?password="):
        raise ValueError(f"do not write the password into the URL ({where}); use {key} with a secret reference")
    raise ValueError(
        f"do not write a password into the URL ({where}): the config holds no secrets; give a TLS key file "
        "without a passphrase, mounted from your secret store"
    )


def _sqlalchemy_password_in(url: str) -> bool:
    """SQLAlchemy, which opens ``store.url``, reads a password up to the ``@`` before the host, so one holding ``/``,
    ``?`` or ``#`` hides from ``urlsplit`` (``postgresql+asyncpg://app:pa/ss@db/mfa``)."""
    try:
        return make_url(url).password is not None
    except (ArgumentError, ValueError):
        # The exception's text may quote the URL: the message must not.
        raise ValueError("cannot be read as a database URL; check the port is a number") from None


class Store(_Section):
    url: str = Field(
        "sqlite+aiosqlite:///data/mfa-gateway.db",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB",
    )
    password: str | None = Field(None, description="a secret reference such as file:/run/secrets/db-password")
    auto_migrate: bool = Field(True, description="true or false: apply schema migrations at start")

    @field_validator("url")
    @classmethod
    def _driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB")
        _refuse_password_in(url, "store.password")
        if _sqlalchemy_password_in(url):
            raise ValueError("do not write the password into the URL; use store.password with a secret reference")
        return url


class SentinelAddress(NamedTuple):
    """A Redis Sentinel's address as redis-py takes it: the host without brackets, and the port."""

    host: str
    port: int


_SENTINEL_FORM = "write HOST:PORT or [IPV6]:PORT, e.g. redis-sentinel-0.mfa.svc:26379 or [fd00::1]:26379"
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?", re.ASCII)


def _sentinel_address(value: object) -> SentinelAddress:
    """``HOST:PORT`` (a name or IPv4 address), ``[IPV6]:PORT``, or, as always accepted, ``IPV6:PORT`` split at the
    last colon. The port is 1-65535."""
    if not isinstance(value, str):
        raise ValueError(f"each sentinel is one string; {_SENTINEL_FORM}")
    host, _, port = value.rpartition(":")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} does not end in :PORT with a port 1-65535; {_SENTINEL_FORM}")
    bracketed = len(host) > 2 and host[0] == "[" and host[-1] == "]"
    if bracketed:
        host = host[1:-1]
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is no IPv6 address; {_SENTINEL_FORM}") from None
        if not bracketed:
            log.warning("state.sentinels: %s is read as host %s, port %s; write [%s]:%s", value, host, port, host, port)
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r}: {host!r} is no host name or address; {_SENTINEL_FORM}")
    return SentinelAddress(host, int(port))


class State(_Section):
    backend: Literal["memory", "redis"] = Field(
        "memory", description="memory (one process only) or redis (several processes or replicas)"
    )
    url: str = Field("redis://127.0.0.1:6379/0", description="redis://HOST:PORT/DB or rediss:// for TLS")
    password: str | None = Field(None, description="a secret reference such as file:/run/secrets/redis-password")
    key_prefix: str = Field("mfa:", max_length=64, description="a prefix for every Redis key")
    socket_timeout: float = Field(2.0, gt=0, le=30, description="seconds, more than 0 and at most 30")
    sentinels: tuple[Annotated[SentinelAddress, BeforeValidator(_sentinel_address)], ...] = Field(
        (),
        description="HOST:PORT or [IPV6]:PORT of Redis Sentinels; the master's address then comes from them (url "
        "gives db, TLS)",
    )
    sentinel_master: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the master name the sentinels monitor, e.g. mymaster"
    )
    sentinel_password: str | None = Field(
        None, description="a secret reference to the sentinels' own password (requirepass), when they require one"
    )
    sentinel_tls: bool = Field(
        False, description="reach the sentinels over TLS too, with the ssl_* options of url (rediss://…?ssl_ca_certs=…)"
    )

    @model_validator(mode="after")
    def _sentinel_pair(self) -> State:
        if bool(self.sentinels) != bool(self.sentinel_master):
            raise ValueError("state.sentinels: give both sentinels ([HOST:PORT, …]) and sentinel_master, or neither")
        if self.sentinel_password and not self.sentinels:
            raise ValueError("state.sentinel_password: only used with state.sentinels; remove it or list the sentinels")
        if self.sentinel_tls and not self.sentinels:
            raise ValueError("state.sentinel_tls: only used with state.sentinels; remove it or list the sentinels")
        if self.sentinel_tls and not self.url.startswith("rediss://"):
            raise ValueError(
                "state.sentinel_tls: needs state.url rediss://… (its ssl_* options, such as ssl_ca_certs, are used "
                "for the sentinels too)"
            )
        if self.sentinels and self.url.startswith("rediss://") and not self.sentinel_tls:
            log.warning(
                "state.sentinel_tls is false: the sentinels, which name the master, are asked in clear text; "
                "set it to true if they serve TLS"
            )
        return self

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or unix:///PATH")
        _refuse_password_in(url, "state.password")
        tls = {name: value for name, value in parse_qsl(urlsplit(url).query) if name.startswith("ssl_")}
        if tls and not url.startswith("rediss://"):
            raise ValueError(f"{', '.join(tls)} only apply to rediss:// (TLS); use rediss:// or remove them")
        if tls.get("ssl_cert_reqs", "required").lower() != "required" or tls.get(
            "ssl_check_hostname", "true"
        ).lower() in ("false", "0", "no", "off"):
            raise ValueError(
                "ssl_cert_reqs and ssl_check_hostname must keep certificate and host name checks on; give the CA "
                "that signed the server with ssl_ca_certs=PATH instead"
            )
        return url


class Session(_Section):
    cookie_name: str = Field(
        "__Host-mfa_session", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a cookie name of letters, digits, _ and -"
    )
    secure: bool = Field(True, description="true (HTTPS only); false only with mode: demo")
    ttl: float = Field(43200, gt=0, le=2592000, description="absolute session lifetime in seconds")
    idle_timeout: float = Field(1800, gt=0, le=2592000, description="seconds of inactivity that end a session")
    jwt_ttl: float = Field(900, gt=0, le=86400, description="lifetime of tokens from api/login in seconds")
    jwt_issuer: str = Field("mfa-gateway", min_length=1, description="the iss claim of issued tokens")
    jwt_audience: str = Field("mfa-gateway", min_length=1, description="the aud claim of issued tokens")


class VaultAppRole(_Section):
    role_id_file: Path = Field(description="a file holding the AppRole role id")
    secret_id_file: Path | None = Field(None, description="a file holding the secret id (omit for CIDR-bound roles)")
    mount: str = Field("approle", pattern=r"^[A-Za-z0-9_.-]+$", description="the AppRole auth mount")


class VaultKubernetes(_Section):
    role: str = Field(min_length=1, description="the Vault role bound to this service account")
    token_file: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="the service-account token file (re-read at every login)",
    )
    mount: str = Field("kubernetes", pattern=r"^[A-Za-z0-9_.-]+$", description="the Kubernetes auth mount")


class Vault(_Section):
    address: str = Field(pattern=r"^https?://[^/?#]+$", description="https://vault.example:8200")
    namespace: str | None = Field(None, description="a Vault Enterprise namespace (optional)")
    ca_cert: Path | None = Field(None, description="a PEM file to verify Vault's certificate (default: system CAs)")
    timeout: float = Field(5.0, gt=0, le=60, description="seconds per Vault call, more than 0 and at most 60")
    auth: Literal["token_file", "approle", "kubernetes"] = Field(description="token_file, approle or kubernetes")
    token_file: Path | None = Field(None, description="a file holding a Vault token (auth: token_file, e.g. Agent)")
    approle: VaultAppRole | None = None
    kubernetes: VaultKubernetes | None = None

    @field_validator("address")
    @classmethod
    def _host_without_login(cls, address: str) -> str:
        parts = urlsplit(address)
        if parts.username is not None:
            # requests would send it as Basic credentials, and the host is what follows the last @.
            raise ValueError("no user or password in the address; Vault logs in through secrets.vault.auth")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if not parts.hostname or port == 0:
            raise ValueError("give a host and, if any, a port 1-65535, e.g. https://vault.example:8200")
        return address

    @model_validator(mode="after")
    def _auth_section(self) -> Vault:
        if self.auth == "token_file" and self.token_file is None:
            raise ValueError("secrets.vault.token_file: auth token_file needs token_file: /path/to/token")
        if self.auth == "approle" and self.approle is None:
            raise ValueError("secrets.vault.approle: auth approle needs approle: {role_id_file, secret_id_file}")
        if self.auth == "kubernetes" and self.kubernetes is None:
            raise ValueError("secrets.vault.kubernetes: auth kubernetes needs kubernetes: {role: NAME}")
        return self


class Aws(_Section):
    region: str | None = Field(None, description="an AWS region such as eu-west-1 (default: from the environment)")
    endpoint_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$", description="a VPC endpoint URL (default: the regional endpoint)"
    )
    connect_timeout: float = Field(3.0, gt=0, le=60, description="seconds, more than 0 and at most 60")
    read_timeout: float = Field(5.0, gt=0, le=60, description="seconds, more than 0 and at most 60")
    max_attempts: int = Field(2, ge=1, le=10, description="attempts per call, 1-10")


class SecretCacheSettings(_Section):
    ttl: float = Field(300, ge=10, le=86400, description="seconds a secret is served before it is checked again")
    jitter: float = Field(0.1, ge=0, lt=1, description="a fraction 0-0.99 that spreads refreshes of replicas")
    refresh_ahead: float = Field(0.1, ge=0, lt=1, description="a fraction 0-0.99 of ttl to refresh before expiry")
    max_stale: float = Field(
        86400, ge=10, description="seconds a last good value is served while the backend fails transiently"
    )

    @model_validator(mode="after")
    def _stale_after_ttl(self) -> SecretCacheSettings:
        if self.max_stale < self.ttl:
            raise ValueError("secrets.cache.max_stale: must be at least secrets.cache.ttl")
        return self


class Secrets(_Section):
    keyring: str = Field(description="a reference to the keyring JSON, e.g. file:/run/secrets/keyring.json")
    signing_keys: str = Field(description="a reference to the JWT signing keys JSON, e.g. file:/run/secrets/jwt.json")
    session_keyring: str | None = Field(None, description="a reference to a separate cookie keyring (optional)")
    totp_cipher: str | None = Field(
        None, description="transit:<mount>/<key> to encrypt TOTP secrets with Vault Transit instead of secrets.keyring"
    )
    cache: SecretCacheSettings = SecretCacheSettings()
    vault: Vault | None = Field(None, description="the Vault / OpenBao server for vault: references")
    aws: Aws | None = Field(None, description="AWS settings for awssm: references (optional: the default chain)")

    @field_validator("totp_cipher")
    @classmethod
    def _transit_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                secret_refs.parse_transit(value)  # the one grammar, as start-up reads it
            except secret_refs.SecretRefError as exc:
                raise ValueError(str(exc)) from None
        return value


class Admin(_Section):
    """The admin listener: Prometheus metrics, and the secret-refresh endpoint when a token is configured."""

    enabled: bool = Field(True, description="true or false: serve /metrics (and admin endpoints) on host:port")
    host: str = Field("127.0.0.1", description="an address to bind; 0.0.0.0 in a pod so Prometheus can scrape")
    port: int = Field(9464, ge=1, le=65535, description="a TCP port between 1 and 65535, not listen.port")
    token: str | None = Field(
        None, description="a secret reference to a bearer token for POST /admin/secrets/refresh (unset: endpoint off)"
    )


class Audit(_Section):
    path: str = Field("-", description="'-' for standard error, or a file to append JSON lines to")
    store: bool = Field(True, description="true or false: also keep audit events in the database")


class Settings(_Section):
    mode: Literal["production", "demo"] = Field("production", description="production or demo")
    listen: Listen = Listen()
    prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~-]+$", description="a path such as /_mfa")] = "/_mfa"
    challenge_ttl: float = Field(300, ge=30, le=3600, description="seconds a pending challenge lives, 30-3600")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="one of debug, info, warning, error (info includes one access event per request)"
    )
    log_format: Literal["json", "text"] = Field("json", description="json (one object per line) or text")
    workers: int = Field(1, ge=1, le=64, description="processes serving one port (SO_REUSEPORT); >1 needs Redis")
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+$",
        description="https://HOST where the gateway's pages are reached, if not the app's host",
    )
    trusted_proxies: tuple[Network, ...] = Field(
        (), description="CIDRs of proxies whose X-Forwarded-*, X-Original-* and identity headers are believed"
    )
    identity: Identity = Identity()
    upstream: Upstream = Upstream()
    policy: PolicyConfig = PolicyConfig()
    identity_headers: IdentityHeaders = IdentityHeaders()
    redirects: Redirects = Redirects()
    enrollment: Enrollment = Enrollment()
    forward_auth: ForwardAuth = ForwardAuth()
    totp: Totp = Totp()
    backup_codes: BackupCodes = BackupCodes()
    hashing: Hashing = Hashing()
    limits: Limits = Limits()
    store: Store = Store()
    state: State = State()
    session: Session = Session()
    secrets: Secrets = Field(description="references to the keyring and signing keys (mfa-gateway keygen writes both)")
    audit: Audit = Audit()
    admin: Admin = Admin()

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        identity = self.identity
        if identity.source == "trusted_header" and not self.trusted_proxies:
            raise ValueError(
                "trusted_proxies: identity source trusted_header needs at least one trusted proxy CIDR, "
                "e.g. [127.0.0.1/32]"
            )
        if identity.source == "builtin" and identity.users_file is None:
            raise ValueError("identity.users_file: source builtin needs a users file, e.g. users.yaml")
        if identity.source == "upstream_login" and (identity.upstream_login is None or self.upstream.url is None):
            raise ValueError(
                "identity.upstream_login: source upstream_login needs identity.upstream_login.session_cookie and "
                "upstream.url"
            )
        schemes = {
            str(secret_value(self, key)).split(":", 1)[0] for key in SECRET_KEYS if secret_value(self, key) is not None
        }
        if self.secrets.totp_cipher is not None:
            schemes.add("vault")
        vault = self.secrets.vault
        if (
            vault is not None
            and urlsplit(vault.address).scheme == "http"
            and not (self.demo or _loopback(vault.address))
        ):
            raise ValueError(
                "secrets.vault.address: http:// would send the Vault token and secrets in clear text; use https://"
            )
        if "vault" in schemes and self.secrets.vault is None:
            raise ValueError("secrets.vault: vault: references and transit: need secrets.vault: {address, auth}")
        if self.admin.enabled and (self.admin.host, self.admin.port) == (self.listen.host, self.listen.port):
            raise ValueError("admin.port: the admin listener needs its own port, not listen.port")
        if self.workers > 1 and self.state.backend != "redis":
            raise ValueError("workers: more than one worker needs state.backend: redis (memory state is per process)")
        if not self.session.secure and self.mode != "demo":
            raise ValueError("session.secure: false is only allowed with mode: demo; serve over HTTPS instead")
        if self.session.cookie_name.startswith("__Host-") and not self.session.secure:
            raise ValueError(
                "session.cookie_name: browsers refuse __Host- cookies without Secure; choose a name without "
                "the __Host- prefix when session.secure is false"
            )
        return self

    @property
    def demo(self) -> bool:
        return self.mode == "demo"


def _loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` (any case, no trailing dot, which would ask DNS), an
    address in 127.0.0.0/8, ``::1``, or ``::ffff:127.x.y.z`` (which reaches 127.x.y.z). Anything else, or a URL
    that does not parse, is not: callers fail closed."""
    try:
        host = urlsplit(url).hostname  # lower case, without brackets and without any user@ in front
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def load_settings(path: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read and validate a config file (top-level keys in ``overrides`` win, e.g. from command-line flags).

    Raises ``ConfigError`` with one line per problem.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}; pass an existing file with --config"]) from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError([f"{path} is not valid YAML{line}; fix the syntax"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path} must hold a mapping of keys (see config/gateway.example.yaml)"])
    return parse_settings({**raw, **(overrides or {})}, base_dir=path.resolve().parent)


def parse_settings(raw: Mapping[str, Any], *, base_dir: Path) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    settings = _resolve_paths(settings, base_dir)
    _check_secret_values(settings)
    return settings


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{location}: required; {_hint(error['loc']) or 'add it'}"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key; remove it or check its spelling (see config/gateway.example.yaml)"
    hint = _hint(error["loc"])
    if location and not message.startswith(location):
        return f"{location}: {message}" + (f"; expected {hint}" if hint else "")
    return message


def _hint(loc: tuple[Any, ...]) -> str | None:
    """The field's documented description, which says what a valid value looks like."""
    model: Any = Settings
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        field = fields[part]
        model = field.annotation
    return field.description if field is not None else None


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths in the config are relative to the config file's folder."""

    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else base_dir / path

    identity = settings.identity
    if identity.users_file is not None:
        identity = identity.model_copy(update={"users_file": absolute(identity.users_file)})
    store = settings.store
    prefix = "sqlite+aiosqlite:///"
    if store.url.startswith(prefix) and not store.url.startswith(prefix + "/") and ":memory:" not in store.url:
        store = store.model_copy(update={"url": prefix + str(absolute(Path(store.url.removeprefix(prefix))))})
    audit = settings.audit
    if audit.path != "-":
        audit = audit.model_copy(update={"path": str(absolute(Path(audit.path)))})
    settings = settings.model_copy(update={"identity": identity, "store": store, "audit": audit})
    return _absolute_secret_refs(settings, base_dir)


def _absolute_secret_refs(settings: Settings, base_dir: Path) -> Settings:
    """``file:`` references relative to the config file's folder, wherever a secret reference is allowed."""
    sections: dict[str, dict[str, str]] = {}
    for key in SECRET_KEYS:
        value = secret_value(settings, key)
        if value is not None:
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = _absolute_ref(value, base_dir)
    return settings.model_copy(
        update={section: getattr(settings, section).model_copy(update=names) for section, names in sections.items()}
    )


def _absolute_ref(value: str, base_dir: Path) -> str:
    try:
        parsed = secret_refs.parse(value)
    except secret_refs.SecretRefError:
        return value  # reported with the key's name by _check_secret_values
    return str(secret_refs.resolve_file_paths(parsed.ref, base_dir)) if parsed.ref else value


SECRET_KEYS = (
    "secrets.keyring",
    "secrets.signing_keys",
    "secrets.session_keyring",
    "store.password",
    "state.password",
    "state.sentinel_password",
    "admin.token",
)


def _check_secret_values(settings: Settings) -> None:
    problems = []
    for key in SECRET_KEYS:
        value = secret_value(settings, key)
        if value is None:
            continue
        try:
            parsed = secret_refs.parse(value)
        except secret_refs.SecretRefError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if parsed.ref is None:
            kind = f"the environment variable {parsed.env_name}" if parsed.env_name else "a literal value"
            if not settings.demo:
                problems.append(
                    f"{key}: {kind} is refused outside mode: demo; give a reference such as "
                    f"file:/run/secrets/{key.split('.')[-1]}"
                )
            else:
                log.warning("%s: %s is accepted only because mode is demo", key, kind)
    if problems:
        raise ConfigError(problems)


def secret_value(settings: Settings, dotted: str) -> str | None:
    """The config value of a secret key (``section.name`` from ``SECRET_KEYS``): a reference, or a demo literal."""
    section, name = dotted.split(".")
    value = getattr(getattr(settings, section), name)
    return value if value is None else str(value)


def fixed_secret(parsed: secret_refs.ParsedValue, environ: Mapping[str, str] = os.environ) -> Secret[str]:
    """A secret written into the config rather than referenced (mode: demo only, checked at load): the literal, or
    ``env:NAME`` read now. References are read by the secret cache, never here."""
    if parsed.env_name is not None:
        if parsed.env_name not in environ:
            raise secret_refs.SecretRefError(f"env:{parsed.env_name} is not set")
        return Secret(environ[parsed.env_name])
    assert parsed.literal is not None
    return parsed.literal
