"""The one access decision, shared by the reverse proxy and the forward-auth endpoint.

``decide`` takes what the web layer learned locally (the matched rule, the first factor, the opened session)
and returns ``Allow``, ``Challenge`` or ``Deny``. It performs no I/O, so the hot path stays free of network calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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
    token_id: str | None = None  # a bearer JWT's session id, so sign-out can revoke it
    token_expires: float | None = None


class ChallengeKind(enum.StrEnum):
    SIGN_IN = "sign_in"  # no first factor: go and sign in
    MFA = "mfa"  # signed in, but no (fresh enough) MFA


@dataclass(frozen=True, slots=True)
class Allow:
    rule: Rule
    user_id: str | None = None
    email: str | None = None
    groups: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    rule: Rule
    kind: ChallengeKind
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Deny:
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
    mfa_time = session.mfa_time if session is not None else first_factor.mfa_time
    if mfa_time is not None and (rule.max_age is None or now - mfa_time <= rule.max_age):
        return allow
    # No (fresh enough) second factor: a remembered device's stand-in counts only where the rule accepts one.
    if session is not None and session.device is not None and session.device.satisfies(rule, now):
        return allow
    return Challenge(rule, ChallengeKind.MFA, first_factor.user_id)


def label_of(decision: Decision) -> str:
    """The decision's name in metrics, access events and error codes (a small fixed set)."""
    if isinstance(decision, Allow):
        return "bypass" if decision.rule.action is Action.BYPASS else "allow"
    if isinstance(decision, Challenge):
        return "mfa_required" if decision.kind is ChallengeKind.MFA else "unauthenticated"
    return "deny"
