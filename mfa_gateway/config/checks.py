"""Checks across keys (a source that needs another key, ports that must differ): every one is run and every
problem reported, also when other sections of the file are invalid."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mfa_gateway.config import urls
from mfa_gateway.config.references import SECRET_KEYS, secret_value

if TYPE_CHECKING:
    from mfa_gateway.config.schema import Settings


class Unchecked(Exception):
    """A cross-key check read a section that failed its own validation: the check is skipped, the section's own
    error is reported."""


def _trusted_header_has_proxies(s: Settings) -> str | None:
    if s.identity.source == "trusted_header" and not s.trusted_proxies:
        return (
            "trusted_proxies: identity source trusted_header needs at least one trusted proxy CIDR, e.g. [127.0.0.1/32]"
        )
    return None


def _builtin_has_users_file(s: Settings) -> str | None:
    if s.identity.source == "builtin" and s.identity.users_file is None:
        return "identity.users_file: source builtin needs a users file, e.g. users.yaml"
    return None


def _upstream_login_has_app(s: Settings) -> str | None:
    if s.identity.source == "upstream_login" and (s.identity.upstream_login is None or s.upstream.url is None):
        return (
            "identity.upstream_login: source upstream_login needs identity.upstream_login.session_cookie and "
            "upstream.url"
        )
    return None


def _decision_cache_keyed_by_credentials(s: Settings) -> str | None:
    if s.forward_auth.cache_ttl and s.identity.source == "trusted_header":
        return (
            "forward_auth.cache_ttl: with identity.source trusted_header the decision reads a header that a proxy's "
            "cache key does not hold, so a reused answer could reach another user; set it to 0"
        )
    return None


def _vault_over_tls(s: Settings) -> str | None:
    vault = s.secrets.vault
    if vault is not None and vault.address.startswith("http://") and not (s.demo or urls.loopback(vault.address)):
        return "secrets.vault.address: http:// would send the Vault token and secrets in clear text; use https://"
    return None


def _vault_configured(s: Settings) -> str | None:
    values = (secret_value(s, key) for key in SECRET_KEYS)
    uses_vault = s.secrets.totp_cipher is not None or any(v is not None and v.startswith("vault:") for v in values)
    if uses_vault and s.secrets.vault is None:
        return "secrets.vault: vault: references and transit: need secrets.vault: {address, auth}"
    return None


def _admin_port_apart(s: Settings) -> str | None:
    if s.admin.enabled and (s.admin.host, s.admin.port) == (s.listen.host, s.listen.port):
        return "admin.port: the admin listener needs its own port, not listen.port"
    return None


def _workers_share_state(s: Settings) -> str | None:
    if s.workers > 1 and s.state.backend != "redis":
        return "workers: more than one worker needs state.backend: redis (memory state is per process)"
    return None


def _secure_outside_demo(s: Settings) -> str | None:
    if not s.session.secure and s.mode != "demo":
        return "session.secure: false is only allowed with mode: demo; serve over HTTPS instead"
    return None


def _host_cookie_secure(s: Settings) -> str | None:
    if s.session.cookie_name.startswith("__Host-") and not s.session.secure:
        return (
            "session.cookie_name: browsers refuse __Host- cookies without Secure; choose a name without the __Host- "
            "prefix when session.secure is false"
        )
    return None


def _device_cookie_secure(s: Settings) -> str | None:
    if s.trusted_devices.cookie(s.session.secure).startswith("__Host-") and not s.session.secure:
        return (
            "trusted_devices.cookie_name: browsers refuse __Host- cookies without Secure; choose a name without the "
            "__Host- prefix when session.secure is false"
        )
    return None


def _device_cookie_apart(s: Settings) -> str | None:
    name = s.trusted_devices.cookie(s.session.secure)
    login = s.identity.upstream_login
    taken = {s.session.cookie_name, s.session.cookie_name + "_pending", "mfa_csrf", "__Host-mfa_csrf"}
    if name in taken or (login is not None and name == login.session_cookie):
        return "trusted_devices.cookie_name: must differ from the session, pending, CSRF and application cookies"
    return None


CROSS_CHECKS: tuple[Callable[[Settings], str | None], ...] = (
    _trusted_header_has_proxies,
    _builtin_has_users_file,
    _upstream_login_has_app,
    _decision_cache_keyed_by_credentials,
    _vault_over_tls,
    _vault_configured,
    _admin_port_apart,
    _workers_share_state,
    _secure_outside_demo,
    _host_cookie_secure,
    _device_cookie_secure,
    _device_cookie_apart,
)


def _webauthn_relying_party(s: Settings) -> list[str]:
    from mfa_gateway.config.webauthn import webauthn_problems

    return webauthn_problems(s)


def _phishing_resistant_rules_have_webauthn(s: Settings) -> list[str]:
    from mfa_gateway.config.webauthn import policy_problems

    return policy_problems(s)


def cross_problems(settings: Settings) -> list[str]:
    """Every cross-key problem, not only the first. ``settings`` may be a partial view (see ``loading``) whose
    invalid sections raise ``Unchecked``: a check reading one is skipped."""
    problems = []
    for check in CROSS_CHECKS:
        try:
            problem = check(settings)
        except Unchecked:
            continue
        if problem is not None:
            problems.append(problem)
    for checks in (_webauthn_relying_party, _phishing_resistant_rules_have_webauthn):
        with contextlib.suppress(Unchecked):
            problems += checks(settings)
    return problems
