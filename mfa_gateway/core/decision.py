"""The one access decision, shared by the reverse proxy and the forward-auth endpoint.

``decide`` takes what the web layer learned locally (the matched rule, the first factor, the opened session)
and returns ``Allow``, ``Challenge`` or ``Deny``. It performs no I/O, so the hot path stays free of network calls.

A rule with ``phishing_resistant`` is satisfied only by a phishing-resistant method (``core.methods``: WebAuthn),
never by a TOTP or backup code nor by a remembered device, whatever else the session holds; with ``max_age``, that
method itself must have been given within ``max_age`` seconds. A session keeps the time of its last
phishing-resistant step-up apart from ``mfa_time``, so a TOTP step-up after a WebAuthn one refreshes ``mfa_time``
but not this: it cannot stretch an old WebAuthn proof over a fresh-only route. A bearer JWT is judged by its
``amr`` and ``iat`` (the time it was issued after MFA), as ``mfa_time`` is.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import NamedTuple

from mfa_gateway.core.methods import phishing_resistant
from mfa_gateway.core.policy import Action, Rule
from mfa_gateway.core.session import Session


@dataclass(frozen=True, slots=True)
class FirstFactor:
    """Who the request says it is, before MFA. ``binding`` ties a step-up session to this first factor."""

    user_id: str | None
    source: str
    binding: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    auth_time: float | None = None
    mfa_time: float | None = None  # a bearer JWT issued after MFA carries its own step-up time
    phishing_resistant_time: float | None = None  # ... and that time again if its amr has a phishing-resistant method
    token_id: str | None = None  # a bearer JWT's session id, so sign-out can revoke it
    token_expires: float | None = None


class ChallengeKind(enum.StrEnum):
    SIGN_IN = "sign_in"  # no first factor: go and sign in
    MFA = "mfa"  # signed in, but no (fresh enough) MFA
    PHISHING_RESISTANT = "phishing_resistant"  # the rule wants a (fresh enough) phishing-resistant method


class Allow(NamedTuple):
    """The request may pass, as ``user_id`` (None on a ``bypass`` rule). The decisions are named tuples: one is
    built on every request, and a frozen dataclass sets each field through ``object.__setattr__`` at several times
    the cost; they are as immutable, and are told apart by type (``isinstance``), never compared."""

    rule: Rule
    user_id: str | None = None
    email: str | None = None
    groups: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    session: Session | None = None


class Challenge(NamedTuple):
    rule: Rule
    kind: ChallengeKind
    user_id: str | None = None


class Deny(NamedTuple):
    rule: Rule
    reason: str


Decision = Allow | Challenge | Deny


def decide(rule: Rule, first_factor: FirstFactor | None, session: Session | None, now: float) -> Decision:
    """``session`` must already be opened, unexpired, not idle, not revoked and bound to ``first_factor``."""
    if rule.action is Action.DENY:
        return Deny(rule, "denied by policy")
    if rule.action is Action.BYPASS:
        return Allow(rule)
    if first_factor is None or first_factor.user_id is None:
        return Challenge(rule, ChallengeKind.SIGN_IN)
    methods = session.methods if session is not None else ()
    allow = Allow(rule, first_factor.user_id, first_factor.email, first_factor.groups, methods, session)
    if rule.action is Action.IDENTITY:
        return allow
    if rule.phishing_resistant:
        if session is not None:
            resistant = session.phishing_resistant_time if phishing_resistant(session.methods) else None
        else:
            resistant = first_factor.phishing_resistant_time
        if not _fresh(resistant, rule.max_age, now):
            return Challenge(rule, ChallengeKind.PHISHING_RESISTANT, first_factor.user_id)
    mfa_time = session.mfa_time if session is not None else first_factor.mfa_time
    if _fresh(mfa_time, rule.max_age, now):
        return allow
    # No (fresh enough) second factor: a remembered device's stand-in counts only where the rule accepts one.
    if session is not None and session.device is not None and session.device.satisfies(rule, now):
        return allow
    return Challenge(rule, ChallengeKind.MFA, first_factor.user_id)


def _fresh(at: float | None, max_age: float | None, now: float) -> bool:
    return at is not None and (max_age is None or now - at <= max_age)


REUSABLE_SOURCES = frozenset({"session", "jwt", "app"})
"""First factors a front proxy's cache key holds (the shipped nginx keys: the Cookie and Authorization headers): the
gateway's session cookie, a bearer token, an application's session cookie (upstream_login). Not a trusted proxy's
identity header (``hdr``), which the key does not hold."""
PROXY_CLOCK_SLACK = 1
"""nginx counts whole seconds: an answer it may keep N seconds is served until its clock's second passes N, up to
N + 1 seconds after it arrived. The reuse time is said one second short, so that no bound is ever exceeded."""


def reusable_for(allow: Allow, first_factor: FirstFactor | None, now: float, idle_timeout: float, limit: float) -> int:
    """Whole seconds a front proxy may reuse this answer instead of asking again; 0: not at all.

    Only an answer naming a user, from credentials the proxy's cache key holds (``REUSABLE_SOURCES``), is reusable,
    and never for longer than ``limit``, the session's remaining idle or absolute time, the bearer token's, or the
    rule's freshness (``max_age`` since the last MFA); a ``bypass`` answer names nobody and is not."""
    if allow.user_id is None or first_factor is None or first_factor.source not in REUSABLE_SOURCES:
        return 0
    left = limit
    session = allow.session
    if session is not None:
        left = min(left, session.expires_at - now, idle_timeout - (now - max(session.last_seen, session.issued_at)))
    if first_factor.token_expires is not None:
        left = min(left, first_factor.token_expires - now)
    rule = allow.rule
    if rule.action is Action.MFA and rule.max_age is not None:
        mfa_time = session.mfa_time if session is not None else first_factor.mfa_time
        if mfa_time is None:
            return 0
        left = min(left, rule.max_age - (now - mfa_time))
    return max(0, math.floor(left) - PROXY_CLOCK_SLACK)


def label_of(decision: Decision) -> str:
    """The decision's name in metrics, access events and error codes (a small fixed set)."""
    if isinstance(decision, Allow):
        return "bypass" if decision.rule.action is Action.BYPASS else "allow"
    if isinstance(decision, Challenge):
        return _CHALLENGE_LABELS[decision.kind]
    return "deny"


_CHALLENGE_LABELS = {
    ChallengeKind.SIGN_IN: "unauthenticated",
    ChallengeKind.MFA: "mfa_required",
    ChallengeKind.PHISHING_RESISTANT: "phishing_resistant_required",
}
