"""One authenticated Vault/OpenBao client, shared by the KV provider and the Transit cipher.

Authentication methods:

* ``TokenFileAuth``: a token someone else keeps current (Vault Agent's token sink, an init container). The file is
  re-read whenever it changes and after a 401/403; this process never renews or replaces that token, because the
  writer of the file owns its lifecycle.
* ``AppRoleAuth``: role-id and secret-id files, re-read at every login so a rotated secret-id is picked up.
* ``KubernetesAuth``: the pod's service-account token, re-read at every login (kubelet rotates projected tokens).

The token lifecycle runs on the injected clock, never on sleeps: every request first calls ``maintain()``, which logs
in when there is no token or it has expired, and renews it once 2/3 of its TTL have passed. A failed renewal, or one
that grants less than a third of the original TTL (the token is near its max TTL), is followed by a fresh login.
Failed logins back off exponentially (1 s doubling to 5 min of injected time), so a broken credential does not turn
every refresh into a login storm. A 401/403 on a request causes one fresh login and one retry: a revoked or expired
token recovers, while a policy that really forbids the path becomes a ``PermanentSecretError``.

Thread safety: the cache calls from worker threads. Token state changes under one lock; requests run concurrently
on hvac's shared requests session (urllib3's connection pool is thread-safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from mfa_gateway.ports import PermanentSecretError, SecretBackendError, TransientSecretError

log = logging.getLogger("mfa_gateway.secrets.vault")

T = TypeVar("T")

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
RENEW_AFTER = 2 / 3
"""Renew once this fraction of the token's TTL has passed."""
MIN_RENEWED = 1 / 3
"""A renewal granting less than this fraction of the login TTL means the max TTL is near: log in afresh instead."""
EXPIRY_MARGIN = 5.0
FORCED_LOGIN_EVERY = 30.0
"""Seconds between two logins forced by a 403: one recovers a revoked token; more would follow a policy denial."""
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0

_STATUS: tuple[tuple[type[hvac.exceptions.VaultError], int], ...] = (
    (hvac.exceptions.InvalidRequest, 400),
    (hvac.exceptions.Unauthorized, 401),
    (hvac.exceptions.Forbidden, 403),
    (hvac.exceptions.InvalidPath, 404),
    (hvac.exceptions.PreconditionFailed, 412),
    (hvac.exceptions.RateLimitExceeded, 429),
    (hvac.exceptions.InternalServerError, 500),
    (hvac.exceptions.VaultNotInitialized, 501),
    (hvac.exceptions.BadGateway, 502),
    (hvac.exceptions.VaultDown, 503),
)
_MEANING = {
    400: "Vault rejected the request",
    401: "Vault refused the token",
    403: "permission denied; check the policy attached to the gateway's Vault role",
    404: "not found: no such secret or version, or it was deleted or destroyed",
    412: "a performance standby has not caught up yet",
    429: "Vault is rate limiting requests",
    501: "Vault is not initialized",
    503: "Vault is sealed or in standby",
}


@dataclass(frozen=True, slots=True)
class TokenFileAuth:
    token_file: Path


@dataclass(frozen=True, slots=True)
class AppRoleAuth:
    role_id_file: Path
    secret_id_file: Path | None = None
    """None for a role created with ``bind_secret_id=false`` (bound by CIDR instead)."""
    mount: str = "approle"


@dataclass(frozen=True, slots=True)
class KubernetesAuth:
    role: str
    token_file: Path = SERVICE_ACCOUNT_TOKEN
    mount: str = "kubernetes"


VaultAuth = TokenFileAuth | AppRoleAuth | KubernetesAuth


@dataclass(frozen=True, slots=True)
class VaultOptions:
    address: str
    auth: VaultAuth
    namespace: str | None = None
    ca_cert: Path | None = None
    """A PEM bundle to verify Vault's TLS certificate (None: the system trust store)."""
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class AuthStatus:
    """Token state for readiness and metrics (no token, no credential)."""

    method: str
    authenticated: bool
    logins: int
    login_failures: int
    renewals: int
    expires_at: float | None
    next_login_at: float | None
    last_error: str | None


class VaultSession:
    def __init__(self, options: VaultOptions, *, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self._clock = clock
        self._lock = threading.RLock()
        verify: str | bool = str(options.ca_cert) if options.ca_cert else True
        self.client = hvac.Client(
            url=options.address,
            namespace=options.namespace,
            verify=verify,
            timeout=options.timeout,  # type: ignore[arg-type]  # requests takes float seconds
        )
        self._token: str | None = None
        self._generation = 0
        self._lease = 0.0
        self._expires_at: float | None = None
        self._renew_at: float | None = None
        self._file_stamp: tuple[int, int, int] | None = None
        self._failures = 0
        self._next_login_at = 0.0
        self._forced_login_at = -FORCED_LOGIN_EVERY
        self._login_error: SecretBackendError | None = None
        self._logins = self._renewals = self._login_failures = 0
        self._last_error: str | None = None

    @property
    def method(self) -> str:
        auth = self.options.auth
        return (
            "token" if isinstance(auth, TokenFileAuth) else "approle" if isinstance(auth, AppRoleAuth) else "kubernetes"
        )

    def call(self, what: str, operation: Callable[[hvac.Client], T]) -> T:
        """Run one request with a valid token; ``what`` (e.g. "reading vault:secret/x#k") starts error messages."""
        generation = self.maintain()
        try:
            return operation(self.client)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            pass
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise self.classify(exc, what) from None
        self._replace_token(generation)
        try:
            return operation(self.client)
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise self.classify(exc, f"{what} (after a fresh login)") from None

    def maintain(self) -> int:
        """Log in or renew as due (by the injected clock); the token generation in use afterwards."""
        with self._lock:
            now = self._clock()
            if isinstance(self.options.auth, TokenFileAuth):
                self._read_token_file(self.options.auth, force=False)
            elif self._token is None or (self._expires_at is not None and now >= self._expires_at - EXPIRY_MARGIN):
                self._login(now)
            elif self._renew_at is not None and now >= self._renew_at:
                self._renew(now)
            return self._generation

    def status(self) -> AuthStatus:
        with self._lock:
            return AuthStatus(
                method=self.method,
                authenticated=self._token is not None,
                logins=self._logins,
                login_failures=self._login_failures,
                renewals=self._renewals,
                expires_at=self._expires_at,
                next_login_at=self._next_login_at or None,
                last_error=self._last_error,
            )

    def close(self) -> None:
        self.client.adapter.close()

    def classify(self, exc: Exception, what: str) -> SecretBackendError:
        """A driver exception as a transient or permanent error whose message holds no response body."""
        if isinstance(exc, requests.exceptions.SSLError):
            return PermanentSecretError(
                f"{what}: TLS verification of {self.options.address} failed; set ca_cert to the CA that signed it"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientSecretError(f"{what}: Vault at {self.options.address} did not answer in time")
        if isinstance(exc, requests.RequestException):
            return TransientSecretError(f"{what}: cannot connect to Vault at {self.options.address}")
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), None)
        meaning = _MEANING.get(status or 0, f"Vault failed (HTTP {status or 'error'})")
        errors = getattr(exc, "errors", None)
        detail = ""
        if isinstance(errors, list) and all(isinstance(e, str) for e in errors) and errors:
            detail = f" (Vault says: {'; '.join(errors)[:200]})"
        kind = PermanentSecretError if status in (400, 401, 403, 404) else TransientSecretError
        return kind(f"{what}: {meaning}{detail}", status=status)

    def _replace_token(self, generation: int) -> None:
        """After a 401/403: a new token, unless another thread already replaced the one that failed."""
        with self._lock:
            if generation != self._generation:
                return
            auth = self.options.auth
            if isinstance(auth, TokenFileAuth):
                before = self._token
                self._read_token_file(auth, force=True)
                if self._token == before:
                    raise PermanentSecretError(
                        f"Vault refused the token in {auth.token_file} and the file still holds the same token; "
                        "whoever writes it (Vault Agent?) must renew or replace it",
                        status=403,
                    )
                return
            now = self._clock()
            if now - self._forced_login_at < FORCED_LOGIN_EVERY:
                # The token a 403 just replaced was refused too: the policy denies it. Another login per request
                # would only create tokens at the request rate.
                raise PermanentSecretError(
                    f"Vault refused a token obtained {now - self._forced_login_at:.0f} s ago; check the policy",
                    status=403,
                )
            self._token = None
            self._login(now)
            self._forced_login_at = now

    def _login(self, now: float) -> None:
        if now < self._next_login_at and self._login_error is not None:
            wait = self._next_login_at - now
            raise type(self._login_error)(
                f"{self._login_error.message} (next login attempt in {wait:.0f} s)", status=self._login_error.status
            )
        try:
            auth = self._login_request()
        except (hvac.exceptions.VaultError, requests.RequestException, SecretBackendError) as exc:
            error = exc if isinstance(exc, SecretBackendError) else self.classify(exc, f"vault login ({self.method})")
            self._failures += 1
            self._login_failures += 1
            self._next_login_at = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
            self._login_error = error
            self._last_error = error.message
            raise error from None
        self._accept_login(auth, now)

    def _login_request(self) -> Mapping[str, Any]:
        auth = self.options.auth
        if isinstance(auth, AppRoleAuth):
            role_id = _credential(auth.role_id_file, "AppRole role-id")
            secret_id = _credential(auth.secret_id_file, "AppRole secret-id") if auth.secret_id_file else None
            response = self.client.auth.approle.login(role_id, secret_id, mount_point=auth.mount)
        elif isinstance(auth, KubernetesAuth):
            jwt = _credential(auth.token_file, "service-account token")
            response = self.client.auth.kubernetes.login(auth.role, jwt, mount_point=auth.mount)
        else:  # pragma: no cover - token files never log in
            raise AssertionError("token-file auth does not log in")
        result: Mapping[str, Any] = response["auth"]
        return result

    def _accept_login(self, auth: Mapping[str, Any], now: float) -> None:
        self._set_token(str(auth["client_token"]))
        self._lease = float(auth.get("lease_duration") or 0)
        self._expires_at = now + self._lease if self._lease > 0 else None
        renewable = bool(auth.get("renewable")) and self._lease > 0
        self._renew_at = now + self._lease * RENEW_AFTER if renewable else None
        self._failures, self._next_login_at, self._login_error, self._last_error = 0, 0.0, None, None
        self._logins += 1

    def _renew(self, now: float) -> None:
        try:
            lease = float(self.client.auth.token.renew_self()["auth"]["lease_duration"] or 0)
        except (hvac.exceptions.VaultError, requests.RequestException, KeyError, TypeError) as exc:
            log.warning("vault: renewing the token failed (%s); logging in afresh", type(exc).__name__)
        else:
            self._expires_at = now + lease
            self._renew_at = now + lease * RENEW_AFTER
            self._renewals += 1
            if lease >= self._lease * MIN_RENEWED:
                return
        try:
            self._login(now)
        except SecretBackendError as exc:
            if self._expires_at is not None and now < self._expires_at - EXPIRY_MARGIN:
                log.warning("vault: %s; the current token stays in use until it expires", exc.message)
                self._renew_at = max(self._next_login_at, now + BACKOFF_FIRST)
                return
            self._token = None
            raise

    def _read_token_file(self, auth: TokenFileAuth, *, force: bool) -> None:
        try:
            stat = auth.token_file.stat()
        except OSError as exc:
            raise PermanentSecretError(f"cannot read the Vault token file {auth.token_file}: {exc.strerror}") from None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._file_stamp and self._token is not None and not force:
            return
        token = _credential(auth.token_file, "Vault token")
        if token != self._token:
            self._set_token(token)
        self._file_stamp = stamp

    def _set_token(self, token: str) -> None:
        self._token = token
        self.client.token = token
        self._generation += 1


def _credential(path: Path, what: str) -> str:
    """A credential file's content; read at each use so rotation needs no restart. Errors never echo the content."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PermanentSecretError(f"cannot read the {what} file {path}: {reason}") from None
    if not text:
        raise PermanentSecretError(f"the {what} file {path} is empty")
    return text
