"""The config file's shape: one frozen pydantic section per concern, and ``Settings`` holding them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mfa_gateway.config import references, urls
from mfa_gateway.config.checks import cross_problems
from mfa_gateway.config.messages import Problems
from mfa_gateway.config.urls import SentinelAddress
from mfa_gateway.core.hashing import Argon2Params
from mfa_gateway.core.model import TOTP_DIGITS, TOTP_PERIODS, AttemptLimits, TotpAlgorithm, TotpParams
from mfa_gateway.core.policy import Action, Policy, PolicyError, Rule


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


Network = Annotated[urls.AnyNetwork, AfterValidator(urls.unmapped)]


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
        return urls.check_store_url(url)


class State(_Section):
    backend: Literal["memory", "redis"] = Field(
        "memory", description="memory (one process only) or redis (several processes or replicas)"
    )
    url: str = Field("redis://127.0.0.1:6379/0", description="redis://HOST:PORT/DB or rediss:// for TLS")
    password: str | None = Field(None, description="a secret reference such as file:/run/secrets/redis-password")
    key_prefix: str = Field("mfa:", max_length=64, description="a prefix for every Redis key")
    socket_timeout: float = Field(2.0, gt=0, le=30, description="seconds, more than 0 and at most 30")
    sentinels: tuple[Annotated[SentinelAddress, BeforeValidator(urls.sentinel_address)], ...] = Field(
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
        problems = []
        if bool(self.sentinels) != bool(self.sentinel_master):
            problems.append("state.sentinels: give both sentinels ([HOST:PORT, …]) and sentinel_master, or neither")
        if self.sentinel_password and not self.sentinels:
            problems.append("state.sentinel_password: only used with state.sentinels; remove it or list the sentinels")
        if self.sentinel_tls and not self.sentinels:
            problems.append("state.sentinel_tls: only used with state.sentinels; remove it or list the sentinels")
        if self.sentinel_tls and not self.url.startswith("rediss://"):
            problems.append(
                "state.sentinel_tls: needs state.url rediss://… (its ssl_* options, such as ssl_ca_certs, are used "
                "for the sentinels too)"
            )
        if problems:
            raise Problems(problems)
        if self.sentinels and self.url.startswith("rediss://") and not self.sentinel_tls:
            urls.log.warning(
                "state.sentinel_tls is false: the sentinels, which name the master, are asked in clear text; "
                "set it to true if they serve TLS"
            )
        return self

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        return urls.check_redis_url(url)


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
        return urls.check_vault_address(address)

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
        return value if value is None else references.check_transit(value)


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
        problems = cross_problems(self)
        if problems:
            raise Problems(problems)
        return self

    @property
    def demo(self) -> bool:
        return self.mode == "demo"
