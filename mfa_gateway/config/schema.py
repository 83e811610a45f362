"""The config file's shape: one frozen pydantic section per concern, and ``Settings`` holding them.

Each field's ``description`` is the reference an operator reads (the docs site and ``mfa-gateway config schema``
render it); its ``x-hint`` is the short "expected …" that follows an error naming the key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mfa_gateway.config import references, urls
from mfa_gateway.config.checks import cross_problems
from mfa_gateway.config.messages import Problems
from mfa_gateway.config.references import REFERENCE_PATTERN
from mfa_gateway.config.urls import SentinelAddress
from mfa_gateway.core import devices, http_fields
from mfa_gateway.core.hashing import Argon2Params
from mfa_gateway.core.model import TOTP_DIGITS, TOTP_PERIODS, AttemptLimits, TotpAlgorithm, TotpParams
from mfa_gateway.core.policy import Action, Policy, PolicyError, Rule

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:mfa-gateway:config"


def hint(text: str, **extra: Any) -> dict[str, Any]:
    """A field's short hint, shown as "expected TEXT" after an error naming the key."""
    return {"x-hint": text, **extra}


def reference(text: str) -> dict[str, Any]:
    """A secret key: a reference string (the pattern documents the form; the grammar itself checks at load)."""
    return hint(text, pattern=REFERENCE_PATTERN)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Section):
    """Where the gateway serves users: its own routes under `prefix`, and the application when proxying."""

    host: str = Field(
        "127.0.0.1", description="Address to bind, e.g. 0.0.0.0 in a container.", json_schema_extra=hint("an address")
    )
    port: int = Field(
        9090, ge=1, le=65535, description="TCP port, 1-65535.", json_schema_extra=hint("a TCP port between 1 and 65535")
    )


class Totp(_Section):
    """Authenticator codes. algorithm, digits and period are stored with each enrollment: changing them affects new
    enrollments only."""

    issuer: str = Field(
        "mfa-gateway",
        min_length=1,
        max_length=64,
        description="Name shown by authenticator apps, 1-64 characters, no ':' (the app's label is issuer:account).",
        json_schema_extra=hint("the name authenticator apps show"),
    )
    algorithm: TotpAlgorithm = Field(
        TotpAlgorithm.SHA1,
        description="SHA1, SHA256 or SHA512 (SHA1 is what every app supports).",
        json_schema_extra=hint("one of SHA1, SHA256, SHA512"),
    )
    digits: int = Field(
        6,
        ge=TOTP_DIGITS.start,
        le=TOTP_DIGITS.stop - 1,
        description="Digits per code: 6, 7 or 8.",
        json_schema_extra=hint("6, 7 or 8"),
    )
    period: int = Field(
        30,
        ge=TOTP_PERIODS.start,
        le=TOTP_PERIODS.stop - 1,
        description=f"Seconds per code, {TOTP_PERIODS.start}-{TOTP_PERIODS.stop - 1} (longer periods cannot be "
        "verified); 30 is what every app supports.",
        json_schema_extra=hint(f"seconds per code, {TOTP_PERIODS.start}-{TOTP_PERIODS.stop - 1}"),
    )
    window: int = Field(
        1, ge=0, le=2, description="Time steps accepted either side of now, 0-2.", json_schema_extra=hint("0, 1 or 2")
    )

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
    """One-time codes for when the authenticator is lost."""

    count: int = Field(
        10,
        ge=5,
        le=20,
        description="Codes per set, 5-20 (12 Crockford base32 symbols each, shown once).",
        json_schema_extra=hint("how many codes a set has, 5-20"),
    )


class Hashing(_Section):
    """Argon2id for backup codes and builtin passwords (defaults: RFC 9106's second recommended profile). Changing a
    cost re-hashes each builtin user's password at their next sign-in."""

    time_cost: int = Field(
        3, ge=1, le=10, description="Argon2id passes, 1-10.", json_schema_extra=hint("Argon2id passes, 1-10")
    )
    memory_kib: int = Field(
        65536,
        ge=8192,
        le=1048576,
        description="Argon2id memory in KiB, 8192-1048576.",
        json_schema_extra=hint("Argon2id memory in KiB, 8192-1048576"),
    )
    parallelism: int = Field(
        4, ge=1, le=16, description="Argon2id lanes, 1-16.", json_schema_extra=hint("Argon2id lanes, 1-16")
    )
    max_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Hashes computed at once per process (a thread pool), 1-64.",
        json_schema_extra=hint("hashes computed at once per process, 1-64"),
    )

    def params(self) -> Argon2Params:
        return Argon2Params(self.time_cost, self.memory_kib, self.parallelism)


_MAX_FAILURES = (
    "Failures within `window` that lock, 1-1000. Attempts being judged are reserved against this limit, so guesses "
    "sent at once get no more tries than guesses sent one by one (429 attempts_busy meanwhile)."
)


class Limit(_Section):
    """Attempt limits per user name: `max_failures` failures within `window` seconds lock for `lockout` seconds,
    doubling with each further lockout up to `max_lockout`."""

    max_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description=_MAX_FAILURES,
        json_schema_extra=hint("failures within `window` that lock, 1-1000"),
    )
    window: float = Field(
        300,
        gt=0,
        le=86400,
        description="Seconds over which failures are counted, more than 0 and at most 86400.",
        json_schema_extra=hint("seconds over which failures are counted"),
    )
    lockout: float = Field(
        60,
        gt=0,
        le=86400,
        description="Seconds of the first lockout; each further lockout doubles it, up to `max_lockout` (at most "
        "86400).",
        json_schema_extra=hint("seconds of the first lockout (doubles each time)"),
    )
    max_lockout: float = Field(
        3600,
        gt=0,
        le=604800,
        description="The longest lockout in seconds, at most 604800.",
        json_schema_extra=hint("the longest lockout in seconds"),
    )
    hard_lock_after: int = Field(
        100,
        ge=0,
        le=100,
        description="Consecutive failures, never forgotten with time, that lock until `mfa-gateway users reset`; "
        "0-100, 0 = off.",
        json_schema_extra=hint("consecutive failures that lock until an admin reset, 1-100 (0 = off)"),
    )

    def limits(self) -> AttemptLimits:
        return AttemptLimits(self.max_failures, self.window, self.lockout, self.max_lockout, self.hard_lock_after)

    @model_validator(mode="after")
    def _lockout_within_max(self) -> Limit:
        if self.lockout > self.max_lockout:
            raise ValueError("lockout must not exceed max_lockout; raise max_lockout or lower lockout")
        return self


class IpLimit(Limit):
    """Attempt limits per client address: looser than per user (many users may share one NAT address), and no hard
    lock. Keys left out keep these per-address defaults."""

    max_failures: int = Field(
        20,
        ge=1,
        le=1000,
        description="Failures within `window` that lock the address, 1-1000; also the most sign-ins and code checks "
        "one address has under way at once (raise it for a large NAT).",
        json_schema_extra=hint("failures within `window` that lock, 1-1000"),
    )
    hard_lock_after: int = Field(
        0,
        ge=0,
        le=100,
        description="Consecutive failures that lock until reset, 0-100; 0 (off): one address may be a whole office.",
        json_schema_extra=hint("consecutive failures that lock until reset (0 = off)"),
    )


class Limits(_Section):
    """Attempt limits, kept in shared state (`state.backend`); code and password failures are counted apart."""

    user: Limit = Field(Limit(), description="Per user name (NFKC and case-folded).")
    ip: IpLimit = Field(IpLimit(), description="Per client address (codes and passwords together).")


Network = Annotated[
    urls.AnyNetwork,
    AfterValidator(urls.unmapped),
    WithJsonSchema({"type": "string", "pattern": urls.CIDR_PATTERN}),
]
Sentinel = Annotated[
    SentinelAddress,
    BeforeValidator(urls.sentinel_address),
    WithJsonSchema({"type": "string", "pattern": urls.SENTINEL_PATTERN}),
]


class UpstreamLogin(_Section):
    """Login interception (`identity.source: upstream_login`): how to recognise the application's login."""

    login_path: str = Field(
        "/login",
        pattern=r"^/",
        description="The path the application's login form POSTs to, starting with /.",
        json_schema_extra=hint("the app's login form target, e.g. /login"),
    )
    username_field: str = Field(
        "username",
        min_length=1,
        description="The login form field (urlencoded or JSON) holding the user name, read strictly before the "
        "application sees it; a form it cannot read is 400 login_not_understood.",
        json_schema_extra=hint("the login form's user name field"),
    )
    session_cookie: str = Field(
        min_length=1,
        description="The name of the application's session cookie, e.g. JSESSIONID.",
        json_schema_extra=hint("the name of the app's session cookie, e.g. JSESSIONID"),
    )
    success_status: tuple[int, ...] = Field(
        (301, 302, 303),
        description="Statuses of a successful login answer (it must also set `session_cookie`).",
        json_schema_extra=hint("statuses of a successful login response, e.g. [302, 303]"),
    )
    max_body: int = Field(
        65536,
        ge=1024,
        le=1048576,
        description="Largest login request body, and largest successful login answer held, in bytes, 1024-1048576.",
        json_schema_extra=hint("largest login request/response body held, bytes"),
    )
    whoami_path: str | None = Field(
        None,
        pattern=r"^/",
        description="Recommended: an application path (e.g. /api/me) answering 200 JSON that names the user its "
        "session cookie belongs to; asked after each successful login. Null: the user is the form's field.",
        json_schema_extra=hint("an app URL that answers JSON naming the signed-in user, e.g. /api/me"),
    )
    whoami_field: str = Field(
        "user",
        min_length=1,
        description="The field of `whoami_path`'s JSON object holding the user name (a non-empty string).",
        json_schema_extra=hint("the JSON field of whoami_path's answer with the user"),
    )


class Identity(_Section):
    """Where the first factor (who is this?) comes from."""

    source: Literal["trusted_header", "builtin", "upstream_login"] = Field(
        "builtin",
        description="builtin (users file; {prefix}/signin and api/login), trusted_header (a header set by a trusted "
        "proxy) or upstream_login (the application's own login form, intercepted).",
        json_schema_extra=hint("where the first factor comes from: trusted_header, builtin or upstream_login"),
    )
    header: str = Field(
        "X-Forwarded-User",
        min_length=1,
        description="With trusted_header: the header carrying the user name.",
        json_schema_extra=hint("the header carrying the user name"),
    )
    email_header: str | None = Field(
        None,
        description="With trusted_header: an optional header carrying the user's email.",
        json_schema_extra=hint("an optional header carrying the user's email"),
    )
    groups_header: str | None = Field(
        None,
        description="With trusted_header: an optional header carrying the user's groups, comma-separated; sent on "
        "as `identity_headers.groups`.",
        json_schema_extra=hint("an optional header carrying the user's groups"),
    )
    users_file: Path | None = Field(
        Path("users.yaml"),
        description="With builtin: the users file (mfa-gateway users add NAME), re-read when it changes. Passwords "
        "hashed with older `hashing` settings are re-hashed at sign-in, so the gateway needs write access to its "
        "folder.",
        json_schema_extra=hint("the builtin users file (mfa-gateway users add NAME)"),
    )
    upstream_login: UpstreamLogin | None = Field(
        None,
        description="Login interception settings; required with upstream_login (which also needs `upstream.url`).",
        json_schema_extra=hint("login interception settings (source upstream_login)"),
    )


class Upstream(_Section):
    """The application behind the gateway (reverse-proxy mode)."""

    url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+$",
        description="http(s)://HOST:PORT of the application, no path. When set, every path outside `prefix` is "
        "proxied to it; null: only the gateway's own routes are served.",
        json_schema_extra=hint("http(s)://HOST:PORT of the app, no path"),
    )
    connect_timeout: float = Field(
        5,
        gt=0,
        le=300,
        description="Seconds to connect to the application (then 502), up to 300.",
        json_schema_extra=hint("seconds to connect to the app"),
    )
    read_timeout: float = Field(
        60,
        gt=0,
        le=3600,
        description="Seconds the application may stay silent while answering (then 504), up to 3600.",
        json_schema_extra=hint("seconds the app may stay silent mid-response"),
    )
    max_connections: int = Field(
        256,
        ge=1,
        le=10000,
        description="Connections to the application at once, kept alive and reused, 1-10000.",
        json_schema_extra=hint("pooled keep-alive connections to the app"),
    )
    keepalive_timeout: float = Field(
        15,
        gt=0,
        le=300,
        description="Idle seconds before a pooled connection to the application closes, up to 300.",
        json_schema_extra=hint("idle seconds before a pooled connection closes"),
    )
    preserve_host: bool = Field(
        True,
        description="true: the application receives the client's Host; false: the host and port of `upstream.url`.",
        json_schema_extra=hint("true or false"),
    )


_ACTION_HINT = hint("bypass, identity, mfa or deny")


class PolicyRule(_Section):
    """One access rule: it matches when every condition given holds."""

    name: str | None = Field(
        None, description="A label for logs and errors (default: rule N).", json_schema_extra=hint("a label")
    )
    action: Literal["bypass", "identity", "mfa", "deny"] = Field(
        description="bypass (no authentication), identity (a first factor), mfa (a first factor and MFA) or deny "
        "(403).",
        json_schema_extra=_ACTION_HINT,
    )
    hosts: tuple[str, ...] = Field(
        (),
        description="Host names, exact or *.example.com; empty matches every host.",
        json_schema_extra=hint("host names, exact or *.example.com; empty matches all"),
    )
    path: str | None = Field(
        None,
        description="A regular expression matched (re.match) on the normalised decoded path; null matches every path.",
        json_schema_extra=hint("a regex matched from the start of the normalised path"),
    )
    methods: tuple[str, ...] = Field(
        (),
        description="Upper-case HTTP methods; empty matches every method.",
        json_schema_extra=hint("HTTP methods; empty matches all"),
    )
    networks: tuple[Network, ...] = Field(
        (),
        description="Client CIDRs, IPv4 or IPv6; empty matches every address.",
        json_schema_extra=hint("client CIDRs; empty matches all"),
    )
    max_age: float | None = Field(
        None,
        gt=0,
        description="mfa rules only: the last MFA must be at most this many seconds old, e.g. 600.",
        json_schema_extra=hint("mfa rules: seconds since the last MFA, e.g. 600"),
    )
    phishing_resistant: bool = Field(
        False,
        description="mfa rules only: true demands a phishing-resistant second factor, a security key or passkey "
        "(WebAuthn), which a look-alike site cannot relay; an authenticator-app or backup code, or a remembered "
        "device, is not enough. With max_age, the security key itself must have been used within it. A user "
        "without one is asked for one (401 phishing_resistant_required). Needs WebAuthn on (webauthn.origins, "
        "or an https public_url).",
        json_schema_extra=hint("mfa rules: true to demand a security key or passkey"),
    )

    remember_device: float | None = Field(
        None,
        ge=0,
        le=devices.MAX_AGE,
        description='mfa rules only: the challenge page offers "Remember this device" and a browser remembered at '
        "most this many seconds ago skips the code here (the first factor is still asked), e.g. 2592000 (30 days); "
        "at most 7776000 (90 days). Null or 0: off. Never on a rule that demands a phishing-resistant method.",
        json_schema_extra=hint("mfa rules: seconds a remembered device counts, at most 7776000; 0 = off"),
    )

    @model_validator(mode="after")
    def _remember_only_where_a_code_is_asked(self) -> PolicyRule:
        if self.remember_device and self.action != "mfa":
            raise ValueError(f"remember_device only applies to 'mfa' rules (this one is {self.action!r}); drop it")
        return self


class PolicyConfig(_Section):
    """Access policy: ordered rules; the first rule whose every condition holds decides, else `default`."""

    default: Literal["bypass", "identity", "mfa", "deny"] = Field(
        "mfa",
        description="The action when no rule matches: bypass, identity, mfa or deny.",
        json_schema_extra=_ACTION_HINT,
    )
    case_insensitive_paths: bool = Field(
        False,
        description="true if the application treats /Admin and /admin alike or runs on Windows: paths are "
        "case-folded before matching, and trailing dots or spaces and look-alike letters are refused.",
        json_schema_extra=hint("true or false"),
    )
    rules: tuple[PolicyRule, ...] = Field(
        (), description="Ordered rules; the first match wins.", json_schema_extra=hint("a list of rules")
    )

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
                    remember_device=rule.remember_device or None,
                    phishing_resistant=rule.phishing_resistant,
                )
                for index, rule in enumerate(self.rules)
            ],
            Action(self.default),
        )

    @model_validator(mode="after")
    def _compiles(self) -> PolicyConfig:
        try:
            policy = self.compile()
        except PolicyError as exc:
            raise ValueError(f"policy.rules: {exc}") from exc
        for index, rule in enumerate(policy.rules):
            if rule.remember_device and devices.requires_phishing_resistant(rule):
                raise ValueError(
                    f"policy.rules: rule #{index} ({rule.name!r}) demands a phishing-resistant method, which a "
                    "remembered device never is; drop remember_device"
                )
        return self


_HEADER_NAMES = hint(
    "a list of header names, each an HTTP token (letters, digits and !#$%&'*+-.^_`|~), e.g. [Remote-User]"
)
HeaderName = Annotated[str, StringConstraints(pattern=f"^{http_fields.NAME_PATTERN}$")]
"""A header name: an HTTP token (``core.http_fields``), nothing a header line could not carry."""


class IdentityHeaders(_Section):
    """Headers the gateway sets on requests it lets through (reverse proxy) or on its 200 answers (forward-auth).
    Every copy a client sends of these names is removed first."""

    user: tuple[HeaderName, ...] = Field(
        ("Remote-User", "X-Auth-Request-User", "X-Auth-User"),
        description="Headers carrying the user name.",
        json_schema_extra=_HEADER_NAMES,
    )
    email: tuple[HeaderName, ...] = Field(
        ("Remote-Email", "X-Auth-Request-Email"),
        description="Headers carrying the user's email.",
        json_schema_extra=_HEADER_NAMES,
    )
    groups: tuple[HeaderName, ...] = Field(
        ("Remote-Groups",), description="Headers carrying the groups, comma-separated.", json_schema_extra=_HEADER_NAMES
    )

    def all(self) -> tuple[str, ...]:
        return (*self.user, *self.email, *self.groups)


class Redirects(_Section):
    """Where the gateway may send a browser after sign-in (rd / next targets)."""

    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="Hosts an absolute rd/next target may point to (exact or *.example.com); relative paths are "
        "always allowed. Also added (as https://HOST) to the pages' form-action.",
        json_schema_extra=hint("hosts an absolute rd/next may point to, e.g. [*.example.com]"),
    )


class ForwardAuth(_Section):
    """The forward-auth endpoint, {prefix}/auth, answered only to `trusted_proxies`."""

    dialect: Literal["auto", "nginx", "traefik"] = Field(
        "auto",
        description="Which headers describe the request asked about: auto (both families; a request carrying both "
        "X-Original-URL and X-Forwarded-Uri is refused), nginx (X-Original-URL/Method only) or traefik "
        "(X-Forwarded-Method/Proto/Host/Uri only; Traefik, Caddy). Pin your proxy's.",
        json_schema_extra=hint(
            "auto, nginx (X-Original-URL/Method only) or traefik (X-Forwarded-Method/Proto/Host/Uri only)"
        ),
    )
    cache_ttl: int = Field(
        0,
        ge=0,
        le=300,  # how late a revocation may reach a request, at worst
        description="Seconds, 0-300, a front proxy may reuse an allowed answer instead of asking again; 0 (the "
        "default) marks no answer reusable. Only an answer for a session (the session cookie, an app session with "
        "upstream_login, or a bearer token) is marked, for one second less than the least of this, the session's "
        "remaining idle and absolute time, the token's and the rule's max_age since the last MFA: X-Accel-Expires "
        "for nginx (and ingress-nginx), else Cache-Control: private, max-age. Every other answer (refusals, "
        "challenges, bypass routes, a refreshed session cookie) says X-Accel-Expires: 0 and Cache-Control: no-store. "
        "A revoked session keeps passing through the proxy's cache for up to this long: keep it short (5-30). The "
        "proxy must key its cache on everything the decision reads (see config/nginx.conf). Not with identity.source "
        "trusted_header.",
        json_schema_extra=hint("seconds a proxy may reuse an allowed answer, 0 (off) to 300"),
    )


class Enrollment(_Section):
    """Self-service enrollment of a signed-in user without MFA."""

    unenrolled: Literal["enroll", "deny"] = Field(
        "enroll",
        description="enroll: such a user reaching an mfa route is sent to the enrollment page (trust on first use). "
        "deny: self-service enrollment is off everywhere (403); an administrator runs mfa-gateway users enroll NAME.",
        json_schema_extra=hint("a signed-in user without MFA on an mfa route: enroll or deny"),
    )


class WebAuthn(_Section):
    """Security keys and passkeys (WebAuthn) as a second factor, beside or instead of an authenticator app. The
    browser signs the origin it runs on into every answer and binds each credential to the relying party id, so a
    credential registered here cannot be used on a look-alike site: this is the phishing-resistant method."""

    enabled: bool = Field(
        True,
        description="Offer security keys and passkeys (the api/webauthn routes). They work only where `origins` "
        "(or `public_url`) gives an origin; without one they are off and the routes answer 404 webauthn_unavailable. "
        "Turned off later, registered credentials stay: their users remain enrolled and must use another factor "
        "or be reset (mfa-gateway users reset NAME).",
        json_schema_extra=hint("true or false"),
    )
    rp_id: str | None = Field(
        None,
        description="The relying party id: a domain that every origin's host equals or ends in, e.g. example.com to "
        "use one credential on app.example.com and login.example.com. Null: the host of the first origin. Every "
        "credential is bound to it: changing it later makes every registered credential unusable.",
        json_schema_extra=hint("a domain such as example.com, the origins' host or a parent of it"),
    )
    rp_name: str | None = Field(
        None,
        max_length=64,
        description="The name an authenticator may show beside the account, at most 64 characters. Null: "
        "`totp.issuer`.",
        json_schema_extra=hint("a name authenticators may show, e.g. Example Corp"),
    )
    origins: tuple[str, ...] = Field(
        (),
        description="Origins (https://HOST or https://HOST:PORT, no path) whose pages may register and use "
        "credentials: the address bar's origin, which the browser signs into every answer; an answer from any other "
        "origin is refused. Empty: `public_url`, if it is https:// on a domain name. Plain http:// only for "
        "localhost with mode: demo.",
        json_schema_extra=hint("origins such as [https://app.example.com]"),
    )
    user_verification: Literal["preferred", "required", "discouraged"] = Field(
        "preferred",
        description="Whether the authenticator must verify the user (PIN or biometrics) besides their touch: "
        "preferred (asked for, not required: a key without a PIN still works as a second factor), required (answers "
        "without it are refused) or discouraged. Passkey sign-in without a password requires it whatever this says.",
        json_schema_extra=hint("preferred, required or discouraged"),
    )
    resident_key: Literal["preferred", "required", "discouraged"] = Field(
        "preferred",
        description="Whether the credential should be discoverable (a passkey the authenticator lists by itself): "
        "preferred, required or discouraged (saves the few slots of a hardware key). Only a discoverable credential "
        "can sign in with a passkey alone (identity.source: builtin).",
        json_schema_extra=hint("preferred, required or discouraged"),
    )
    attestation: Literal["none", "indirect", "direct"] = Field(
        "none",
        description="Attestation asked of new authenticators: none (no device certificate; the authenticator model "
        "is still recorded when it says), indirect or direct (a statement py_webauthn verifies where it can). The "
        "gateway keeps no list of allowed models.",
        json_schema_extra=hint("none, indirect or direct"),
    )
    timeout: float = Field(
        120,
        ge=10,
        le=600,
        description="Seconds a browser gives the user to answer with a security key or passkey, 10-600 (a hint "
        "browsers may ignore).",
        json_schema_extra=hint("seconds for the user to answer, 10-600"),
    )
    challenge_ttl: float = Field(
        180,
        ge=30,
        le=900,
        description="Seconds a challenge stays usable in shared state, 30-900, at least `timeout`; each is taken "
        "once, by the first answer that names it, on any replica.",
        json_schema_extra=hint("seconds a challenge lives, 30-900, at least timeout"),
    )
    max_credentials: int = Field(
        10,
        ge=1,
        le=50,
        description="Security keys and passkeys one user may register, 1-50.",
        json_schema_extra=hint("credentials per user, 1-50"),
    )

    @model_validator(mode="after")
    def _challenge_outlives_the_ceremony(self) -> WebAuthn:
        if self.challenge_ttl < self.timeout:
            raise ValueError(
                "webauthn.challenge_ttl: must be at least webauthn.timeout, or a slow answer finds its challenge gone"
            )
        return self


class TrustedDevices(_Section):
    """ "Remember this device": after MFA on a rule with `remember_device`, a browser may skip the code there for a
    while. Off unless a rule opts in; a grant is kept in the database and ended by disabling MFA, a reset or signing
    out everywhere."""

    cookie_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The device cookie's name (letters, digits, _ and -); it holds an opaque random token, HttpOnly, "
        "SameSite=Lax, Path=/, for as long as the device is remembered. Null: __Host-mfa-device, or mfa-device with "
        "`session.secure: false`. A __Host- name needs `session.secure: true`.",
        json_schema_extra=hint("a cookie name of letters, digits, _ and -"),
    )
    max_per_user: int = Field(
        10,
        ge=1,
        le=100,
        description="Devices one user may have remembered at once, 1-100; remembering one more forgets the oldest.",
        json_schema_extra=hint("remembered devices per user, 1-100"),
    )

    def cookie(self, secure: bool) -> str:
        """The device cookie's name, given `session.secure`."""
        return self.cookie_name or ("__Host-" if secure else "") + "mfa-device"


class Store(_Section):
    """The database: enrollments (encrypted TOTP secrets, hashed backup codes) and audit events."""

    url: str = Field(
        "sqlite+aiosqlite:///data/mfa-gateway.db",
        description="sqlite+aiosqlite:///PATH (a relative PATH is next to the config file) or "
        "postgresql+asyncpg://USER@HOST:PORT/DB. A password in the URL is refused: use `store.password`.",
        json_schema_extra=hint("sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB"),
    )
    password: str | None = Field(
        None,
        description="The database password as a secret reference, e.g. file:/run/secrets/db-password.",
        json_schema_extra=reference("a secret reference such as file:/run/secrets/db-password"),
    )
    auto_migrate: bool = Field(
        True,
        description="Apply schema migrations at start (safe with several replicas: PostgreSQL takes an advisory lock).",
        json_schema_extra=hint("true or false"),
    )
    pool_size: int = Field(
        5,
        ge=1,
        le=100,
        description="PostgreSQL: connections each process keeps open, 1-100 (up to 10 more open during a burst and "
        "close after it). Sizing: processes x (pool_size + 10) must stay under the server's max_connections.",
        json_schema_extra=hint("connections kept open per process, 1-100"),
    )

    @field_validator("url")
    @classmethod
    def _driver(cls, url: str) -> str:
        return urls.check_store_url(url)


class State(_Section):
    """Short-lived shared state: attempt counters, replay marks, pending sign-ins and session revocations."""

    backend: Literal["memory", "redis"] = Field(
        "memory",
        description="memory (this process only) or redis (shared by several processes or replicas).",
        json_schema_extra=hint("memory (one process only) or redis (several processes or replicas)"),
    )
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://HOST:PORT/DB, rediss:// for TLS, or unix:///PATH (Redis 6.2 or newer); used with "
        "backend redis. A password in the URL is refused: use `state.password`.",
        json_schema_extra=hint("redis://HOST:PORT/DB or rediss:// for TLS"),
    )
    password: str | None = Field(
        None,
        description="The Redis password as a secret reference.",
        json_schema_extra=reference("a secret reference such as file:/run/secrets/redis-password"),
    )
    key_prefix: str = Field(
        "mfa:",
        max_length=64,
        description="Prefix of every Redis key and of the revocation channel, at most 64 characters; separates "
        "deployments sharing a Redis.",
        json_schema_extra=hint("a prefix for every Redis key"),
    )
    socket_timeout: float = Field(
        2.0,
        gt=0,
        le=30,
        description="Seconds to connect or answer before Redis counts as unavailable (503), more than 0 and at most "
        "30.",
        json_schema_extra=hint("seconds, more than 0 and at most 30"),
    )
    sentinels: tuple[Sentinel, ...] = Field(
        (),
        description="HOST:PORT or [IPV6]:PORT (port 1-65535) of Redis Sentinels: the master's address comes from them, "
        "again after a failover; `url` then gives only the database, TLS and user. Needs `sentinel_master`.",
        json_schema_extra=hint("HOST:PORT or [IPV6]:PORT of Redis Sentinels"),
    )
    sentinel_master: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The master name the sentinels monitor, e.g. mymaster; needed with `sentinels`.",
        json_schema_extra=hint("the master name the sentinels monitor, e.g. mymaster"),
    )
    sentinel_password: str | None = Field(
        None,
        description="The sentinels' own password (their requirepass, or {username, password} JSON for an ACL user) "
        "as a secret reference, re-read after a refusal.",
        json_schema_extra=reference("a secret reference to the sentinels' own password"),
    )
    sentinel_tls: bool = Field(
        False,
        description="Reach the sentinels over TLS too, with the ssl_* options of `url` (rediss://…?ssl_ca_certs=…); "
        "certificates and host names are verified.",
        json_schema_extra=hint("true or false"),
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
    """Browser sessions (sealed cookies) and the JWTs api/login returns."""

    cookie_name: str = Field(
        "__Host-mfa_session",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Session cookie name (letters, digits, _ and -); the pending-challenge cookie is this name + "
        "_pending. A __Host- name needs `secure: true`.",
        json_schema_extra=hint("a cookie name of letters, digits, _ and -"),
    )
    secure: bool = Field(
        True,
        description="Set the cookies' Secure flag (HTTPS only); false is allowed only with mode: demo.",
        json_schema_extra=hint("true (HTTPS only); false only with mode: demo"),
    )
    ttl: float = Field(
        43200,
        gt=0,
        le=2592000,
        description="Absolute session lifetime in seconds (12 h), at most 2592000 (30 days).",
        json_schema_extra=hint("absolute session lifetime in seconds"),
    )
    idle_timeout: float = Field(
        1800,
        gt=0,
        le=2592000,
        description="Seconds without a request that end a session (30 min), at most 2592000.",
        json_schema_extra=hint("seconds of inactivity that end a session"),
    )
    jwt_ttl: float = Field(
        900,
        gt=0,
        le=86400,
        description="Lifetime of the JWTs api/login returns, in seconds, at most 86400.",
        json_schema_extra=hint("lifetime of tokens from api/login in seconds"),
    )
    jwt_issuer: str = Field(
        "mfa-gateway",
        min_length=1,
        description="The iss claim of issued JWTs; checked on bearer tokens.",
        json_schema_extra=hint("the iss claim of issued tokens"),
    )
    jwt_audience: str = Field(
        "mfa-gateway",
        min_length=1,
        description="The aud claim of issued JWTs; checked on bearer tokens.",
        json_schema_extra=hint("the aud claim of issued tokens"),
    )


_MOUNT = r"^[A-Za-z0-9_.-]+$"


class VaultAppRole(_Section):
    """AppRole login (`auth: approle`)."""

    role_id_file: Path = Field(
        description="A file holding the AppRole role id.", json_schema_extra=hint("a file holding the AppRole role id")
    )
    secret_id_file: Path | None = Field(
        None,
        description="A file holding the secret id (omit for CIDR-bound roles).",
        json_schema_extra=hint("a file holding the secret id (omit for CIDR-bound roles)"),
    )
    mount: str = Field(
        "approle",
        pattern=_MOUNT,
        description="The AppRole auth mount.",
        json_schema_extra=hint("a mount name of letters, digits, _, . and -"),
    )


class VaultKubernetes(_Section):
    """Kubernetes service-account login (`auth: kubernetes`)."""

    role: str = Field(
        min_length=1,
        description="The Vault role bound to this service account.",
        json_schema_extra=hint("the Vault role bound to this service account"),
    )
    token_file: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="The service-account token file, re-read at every login.",
        json_schema_extra=hint("the service-account token file"),
    )
    mount: str = Field(
        "kubernetes",
        pattern=_MOUNT,
        description="The Kubernetes auth mount.",
        json_schema_extra=hint("a mount name of letters, digits, _, . and -"),
    )


class Vault(_Section):
    """The Vault or OpenBao server (KV version 2) for vault: references and transit:."""

    address: str = Field(
        pattern=r"^https?://[^/?#]+$",
        description="https://HOST[:PORT], e.g. https://vault.example:8200. http:// only to a loopback address or in "
        "mode: demo; a user or password in the address is refused.",
        json_schema_extra=hint("https://vault.example:8200"),
    )
    namespace: str | None = Field(
        None, description="A Vault Enterprise namespace (optional).", json_schema_extra=hint("a namespace")
    )
    ca_cert: Path | None = Field(
        None,
        description="A PEM file to verify Vault's certificate (default: the system CAs).",
        json_schema_extra=hint("a PEM file to verify Vault's certificate"),
    )
    timeout: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Seconds per Vault call, more than 0 and at most 60.",
        json_schema_extra=hint("seconds per Vault call, more than 0 and at most 60"),
    )
    auth: Literal["token_file", "approle", "kubernetes"] = Field(
        description="token_file (with `token_file`, e.g. written by Vault Agent), approle (with `approle`) or "
        "kubernetes (with `kubernetes`).",
        json_schema_extra=hint("token_file, approle or kubernetes"),
    )
    token_file: Path | None = Field(
        None,
        description="A file holding a Vault token (auth: token_file), e.g. written by Vault Agent.",
        json_schema_extra=hint("a file holding a Vault token"),
    )
    approle: VaultAppRole | None = Field(None, description="AppRole login settings (auth: approle).")
    kubernetes: VaultKubernetes | None = Field(None, description="Kubernetes login settings (auth: kubernetes).")

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


_AWS_TIMEOUT = hint("seconds, more than 0 and at most 60")


class Aws(_Section):
    """AWS Secrets Manager for awssm: references; credentials come from the default chain (IRSA, instance
    profile)."""

    region: str | None = Field(
        None,
        description="An AWS region such as eu-west-1 (default: from the environment).",
        json_schema_extra=hint("an AWS region such as eu-west-1"),
    )
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="A VPC endpoint URL (default: the regional endpoint).",
        json_schema_extra=hint("an http(s):// URL of a VPC endpoint"),
    )
    connect_timeout: float = Field(
        3.0, gt=0, le=60, description="Seconds to connect, more than 0 and at most 60.", json_schema_extra=_AWS_TIMEOUT
    )
    read_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds to read, more than 0 and at most 60.", json_schema_extra=_AWS_TIMEOUT
    )
    max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="Attempts per call, 1-10 (the secret cache has its own schedule and backoff).",
        json_schema_extra=hint("attempts per call, 1-10"),
    )


class SecretCacheSettings(_Section):
    """Every reference is cached and refreshed in the background: a rotation needs no restart."""

    ttl: float = Field(
        300,
        ge=10,
        le=86400,
        description="Seconds a secret is served before the backend is asked again (the version first), 10-86400.",
        json_schema_extra=hint("seconds a secret is served before it is checked again"),
    )
    jitter: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Fraction, 0-0.99, by which refreshes are spread so replicas do not refresh in step.",
        json_schema_extra=hint("a fraction 0-0.99 that spreads refreshes of replicas"),
    )
    refresh_ahead: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Fraction, 0-0.99, of `ttl` by which a refresh starts before expiry.",
        json_schema_extra=hint("a fraction 0-0.99 of ttl to refresh before expiry"),
    )
    max_stale: float = Field(
        86400,
        ge=10,
        description="Seconds the last good value is served while the backend fails transiently (then 503); at least "
        "`ttl`.",
        json_schema_extra=hint("seconds a last good value is served while the backend fails transiently"),
    )

    @model_validator(mode="after")
    def _stale_after_ttl(self) -> SecretCacheSettings:
        if self.max_stale < self.ttl:
            raise ValueError("secrets.cache.max_stale: must be at least secrets.cache.ttl")
        return self


class Secrets(_Section):
    """The gateway's keys, as secret references: file:/path[#field], vault:<mount>/<path>[?version=N]#<field> or
    awssm:<name|ARN>[?stage=…|?version_id=…][#field]. Literal values and env:NAME are refused outside mode: demo."""

    keyring: str = Field(
        description="Reference to the keyring JSON (mfa-gateway keygen keyring): it encrypts TOTP secrets and held "
        "logins, and seals cookies unless `session_keyring` is set.",
        json_schema_extra=reference("a reference to the keyring JSON, e.g. file:/run/secrets/keyring.json"),
    )
    signing_keys: str = Field(
        description="Reference to the JWT signing-key JSON (mfa-gateway keygen signing).",
        json_schema_extra=reference("a reference to the JWT signing keys JSON, e.g. file:/run/secrets/jwt.json"),
    )
    session_keyring: str | None = Field(
        None,
        description="Reference to a separate keyring for session cookies; null: `secrets.keyring` seals them.",
        json_schema_extra=reference("a reference to a separate cookie keyring (optional)"),
    )
    totp_cipher: str | None = Field(
        None,
        description="transit:<mount>/<key>: encrypt TOTP secrets with a Vault Transit key (it never leaves Vault) "
        "instead of `secrets.keyring`. Needs `secrets.vault`.",
        json_schema_extra=hint(
            "transit:<mount>/<key> to encrypt TOTP secrets with Vault Transit instead of secrets.keyring",
            pattern=r"^transit:.+",
        ),
    )
    cache: SecretCacheSettings = Field(SecretCacheSettings(), description="How references are cached and refreshed.")
    vault: Vault | None = Field(
        None,
        description="The Vault / OpenBao server, needed for vault: references and transit:.",
        json_schema_extra=hint("the Vault / OpenBao server for vault: references"),
    )
    aws: Aws | None = Field(
        None,
        description="AWS settings for awssm: references (optional: the default chain and region apply).",
        json_schema_extra=hint("AWS settings for awssm: references (optional: the default chain)"),
    )

    @field_validator("totp_cipher")
    @classmethod
    def _transit_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else references.check_transit(value, info.context)


class Admin(_Section):
    """The admin listener: Prometheus metrics, and the admin endpoints when a token is configured. Never expose it
    to users."""

    enabled: bool = Field(
        True,
        description="Serve the admin listener (GET /metrics).",
        json_schema_extra=hint("true or false: serve /metrics (and admin endpoints) on host:port"),
    )
    host: str = Field(
        "127.0.0.1",
        description="Address the admin listener binds; 0.0.0.0 in a pod so Prometheus can scrape.",
        json_schema_extra=hint("an address to bind; 0.0.0.0 in a pod so Prometheus can scrape"),
    )
    port: int = Field(
        9464,
        ge=1,
        le=65535,
        description="TCP port of the admin listener, 1-65535, not `listen.port`.",
        json_schema_extra=hint("a TCP port between 1 and 65535, not listen.port"),
    )
    token: str | None = Field(
        None,
        description="Secret reference to a bearer token for POST /admin/secrets/refresh and /admin/users/reset; "
        "unset, those endpoints do not exist.",
        json_schema_extra=reference("a secret reference to a bearer token for the admin endpoints"),
    )


class Audit(_Section):
    """Audit events: sign-ins, MFA, enrollments, admin actions."""

    path: str = Field(
        "-",
        description="'-' for standard error, or a file (relative to the config file) to append JSON lines to.",
        json_schema_extra=hint("'-' for standard error, or a file to append JSON lines to"),
    )
    store: bool = Field(
        True,
        description="Also keep audit events in the database (read by mfa-gateway users show).",
        json_schema_extra=hint("true or false: also keep audit events in the database"),
    )


class Settings(_Section):
    """The mfa-gateway configuration file. Relative paths resolve against the file's folder; unknown keys are
    errors."""

    model_config = ConfigDict(title="mfa-gateway configuration")

    mode: Literal["production", "demo"] = Field(
        "production",
        description="production, or demo: allows session.secure false and literal or env: secrets; never in "
        "production.",
        json_schema_extra=hint("production or demo"),
    )
    listen: Listen = Field(Listen(), description="Where the gateway serves users.")
    prefix: str = Field(
        "/_mfa",
        pattern=r"^/[A-Za-z0-9._~-]+$",
        description="Path under which every gateway route lives (API, pages, /auth, jwks.json, healthz): one segment "
        "of A-Z a-z 0-9 . _ ~ - after /.",
        json_schema_extra=hint("a path such as /_mfa"),
    )
    challenge_ttl: float = Field(
        300,
        ge=30,
        le=3600,
        description="Seconds a pending sign-in waits for its second factor, 30-3600; also the pending cookie's "
        "Max-Age.",
        json_schema_extra=hint("seconds a pending challenge lives, 30-3600"),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="debug, info, warning or error; info includes one access event per request.",
        json_schema_extra=hint("one of debug, info, warning, error (info includes one access event per request)"),
    )
    log_format: Literal["json", "text"] = Field(
        "json",
        description="json (one object per line, every line redacted) or text (for a terminal).",
        json_schema_extra=hint("json (one object per line) or text"),
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes serving `listen.port` together (SO_REUSEPORT), 1-64; more than 1 needs state.backend "
        "redis. serve --workers N overrides it.",
        json_schema_extra=hint("processes serving one port (SO_REUSEPORT); >1 needs Redis"),
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+$",
        description="http(s)://HOST (no path) where browsers reach the pages, if not the host they asked for. It must "
        "name the application's own host: the cookies are host-only.",
        json_schema_extra=hint("https://HOST where the gateway's pages are reached, if not the app's host"),
    )
    trusted_proxies: tuple[Network, ...] = Field(
        (),
        description="CIDRs of the proxies whose X-Forwarded-*, X-Original-* and identity headers are believed: they "
        "decide the client address, who may call {prefix}/auth, and whose identity header counts. Keep it narrow.",
        json_schema_extra=hint("CIDRs of proxies whose X-Forwarded-*, X-Original-* and identity headers are believed"),
    )
    identity: Identity = Field(Identity(), description="Where the first factor comes from.")
    upstream: Upstream = Field(Upstream(), description="The application behind the gateway.")
    policy: PolicyConfig = Field(PolicyConfig(), description="Which requests need what.")
    identity_headers: IdentityHeaders = Field(IdentityHeaders(), description="Headers that carry the user onwards.")
    redirects: Redirects = Field(Redirects(), description="Allowed targets after sign-in.")
    enrollment: Enrollment = Field(Enrollment(), description="Self-service enrollment.")
    forward_auth: ForwardAuth = Field(ForwardAuth(), description="The forward-auth endpoint.")
    totp: Totp = Field(Totp(), description="Authenticator codes.")
    backup_codes: BackupCodes = Field(BackupCodes(), description="One-time backup codes.")
    webauthn: WebAuthn = Field(WebAuthn(), description="Security keys and passkeys.")
    trusted_devices: TrustedDevices = Field(TrustedDevices(), description="Remembered devices.")
    hashing: Hashing = Field(Hashing(), description="Argon2id costs.")
    limits: Limits = Field(Limits(), description="Attempt limits per user and per address.")
    store: Store = Field(Store(), description="The database.")
    state: State = Field(State(), description="Short-lived shared state: memory or Redis.")
    session: Session = Field(Session(), description="Session cookies and JWTs.")
    secrets: Secrets = Field(
        description="References to the keyring and signing keys (mfa-gateway keygen writes both).",
        json_schema_extra=hint("references to the keyring and signing keys (mfa-gateway keygen writes both)"),
    )
    audit: Audit = Field(Audit(), description="Audit events.")
    admin: Admin = Field(Admin(), description="The admin listener (metrics).")

    _secret_values: references.SecretValues | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems = cross_problems(self)
        if problems:
            raise Problems(problems)
        return self

    @property
    def demo(self) -> bool:
        return self.mode == "demo"

    @property
    def secret_values(self) -> references.SecretValues:
        """The secret values, parsed once: ``parse_settings`` sets them, ``file:`` paths resolved against the config
        file's folder. Settings made otherwise (``model_validate``; a ``model_copy`` that changed a secret key) are
        parsed on first access instead, paths as written, and refused with ``ConfigError`` as a file would be."""
        values = self._secret_values
        if values is None or values.texts != references.secret_texts(self):
            values = self._secret_values = references.parse_secret_values(self)
        return values

    def with_secret_values(self, values: references.SecretValues) -> Settings:
        """These settings holding ``values`` (parsed from them): each reference written back in its parsed,
        path-resolved form, so that the string fields (what check-config prints) say the same as the values."""
        sections: dict[str, dict[str, str]] = {}
        for key, ref in values.refs.items():
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = str(ref)
        updated = self.model_copy(
            update={section: getattr(self, section).model_copy(update=names) for section, names in sections.items()}
        )
        updated._secret_values = replace(values, texts=references.secret_texts(updated))
        return updated


def json_schema() -> dict[str, Any]:
    """The config file's JSON Schema (draft 2020-12), from the models: what ``mfa-gateway config schema`` prints and
    editors can validate against. Cross-key rules and the secret-reference grammar are checked by check-config."""
    schema = Settings.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, **schema}
