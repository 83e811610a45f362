"""The ``webauthn`` section resolved against the rest of the file: the relying party the gateway will be.

Explicit ``webauthn.origins`` and ``webauthn.rp_id`` must be right, or the configuration is refused naming the key
(a browser would refuse every ceremony). Left out, they default to ``public_url`` when it makes a WebAuthn origin
(https on a domain name); when it does not, WebAuthn stays off, with a warning, rather than failing a file that was
valid before WebAuthn existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mfa_gateway.config.urls import log
from mfa_gateway.core.relying_party import RelyingParty, host_of, parse_origin, rp_id_problem

if TYPE_CHECKING:
    from mfa_gateway.config.schema import Settings


def _origins(settings: Settings, *, warn: bool = False) -> tuple[list[str], list[str]]:
    """The parsed origins and the problems of the configured ones (each naming its key)."""
    section = settings.webauthn
    demo = settings.mode == "demo"
    parsed, problems = [], []
    for index, text in enumerate(section.origins):
        try:
            parsed.append(parse_origin(text, allow_http_localhost=demo))
        except ValueError as exc:
            problems.append(f"webauthn.origins.{index}: {text!r} {exc}")
    if section.origins or settings.public_url is None:
        return parsed, problems
    try:
        return [parse_origin(settings.public_url, allow_http_localhost=demo)], []
    except ValueError as exc:
        if warn:
            log.warning(
                "webauthn: security keys are off: public_url %s %s; set webauthn.origins to turn them on",
                settings.public_url,
                exc,
            )
        return [], []


def webauthn_problems(settings: Settings) -> list[str]:
    """Every problem of the ``webauthn`` section, each naming its key and the fix."""
    if not settings.webauthn.enabled:
        return []
    origins, problems = _origins(settings, warn=True)
    if problems or not origins:
        return problems
    rp_id = settings.webauthn.rp_id
    problem = rp_id_problem(rp_id or host_of(origins[0]), origins)
    if problem is not None:
        fix = "" if rp_id else " (the default is the first origin's host: set rp_id to a domain they share)"
        problems.append(f"webauthn.rp_id: {problem}{fix}")
    return problems


def relying_party(settings: Settings) -> RelyingParty | None:
    """The relying party the gateway is, or None when WebAuthn is off (disabled, or no origin to serve)."""
    section = settings.webauthn
    if not section.enabled:
        return None
    origins, problems = _origins(settings)
    if problems or not origins:
        return None
    rp_id = section.rp_id or host_of(origins[0])
    if rp_id_problem(rp_id, origins) is not None:
        return None
    return RelyingParty(
        rp_id=rp_id,
        name=section.rp_name or settings.totp.issuer,
        origins=tuple(dict.fromkeys(origins)),
        user_verification=section.user_verification,
        resident_key=section.resident_key,
        attestation=section.attestation,
        timeout=section.timeout,
        challenge_ttl=section.challenge_ttl,
        max_credentials=section.max_credentials,
    )


def policy_problems(settings: Settings) -> list[str]:
    """A rule demanding a phishing-resistant method while WebAuthn is off: nobody could ever pass it. (WebAuthn
    turned on with a wrong origin or relying party id is reported under ``webauthn.*`` instead.)"""
    demanding = [index for index, rule in enumerate(settings.policy.rules) if rule.phishing_resistant]
    if not demanding:
        return []
    if settings.webauthn.enabled:
        origins, problems = _origins(settings)
        if origins or problems:
            return []
        why = "WebAuthn has no origin: set webauthn.origins (or an https public_url on a domain name)"
    else:
        why = "webauthn.enabled is false: turn it on"
    return [
        f"policy.rules.{index}.phishing_resistant: only a security key or passkey satisfies this rule, and {why}, "
        "or drop phishing_resistant"
        for index in demanding
    ]
