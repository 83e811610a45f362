"""Trusted devices ("remember this device"): a browser that passed MFA may skip the second factor for a while.

A policy rule opts in with ``remember_device`` (seconds). After MFA on such a rule the user may ask to be
remembered: the gateway keeps a *grant* (in SQL, revocable) and gives the browser an opaque random token in a cookie;
only the token's SHA-256 hash is stored, so a database dump yields no usable cookie. A grant stands in for the
second factor, and for nothing else:

* only for the user it was made for, and only after the same first factor (``pwd``, ``hdr``, ``app``: how the user
  proved who they are), which must still be given every time;
* only while it is neither revoked nor expired, and no older than the rule asking accepts (its ``remember_device``):
  a grant made on a rule that remembers for 30 days steps up for a rule that accepts 1 day only on its first day;
* never for a rule that demands a phishing-resistant method (``requires_phishing_resistant``), and never for a rule
  without ``remember_device``.

A session a device steps up records a ``DeviceMfa`` beside its MFA time, never as it: ``mfa_time`` stays the time of
a real second factor (which adding a factor or the account pages ask for), and the device's stand-in counts only
for rules that accept remembered devices, each judging its own age on every request (``DeviceMfa.satisfies``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from mfa_gateway.core.policy import Action, Rule

MAX_AGE = 90 * 86400.0
"""The longest a rule may remember a device: 90 days."""
_TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
"""A token as ``new_token`` makes it: 32 random bytes, base64url without padding."""


def new_token() -> str:
    """The cookie's value: 256 random bits, never stored."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def new_grant_id() -> str:
    """A grant's public handle (the account page lists and revokes by it); it opens nothing."""
    return secrets.token_urlsafe(12)


def token_hash(token: str) -> str:
    """What the store keeps of a token, and looks it up by."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    """Whether a cookie value could be a token at all (anything else is not looked up)."""
    return _TOKEN.fullmatch(token) is not None


def requires_phishing_resistant(rule: Rule) -> bool:
    """Whether ``rule`` accepts only a phishing-resistant second factor (``phishing_resistant: true``): the one
    place both guards read, the config check that refuses ``remember_device`` on such a rule and ``device_age``,
    which ignores a device there at run time."""
    return rule.phishing_resistant


def device_age(rule: Rule) -> float | None:
    """How old a remembered device may be for ``rule`` to accept it; None: the rule accepts none."""
    age = rule.remember_device
    if rule.action is not Action.MFA or not age or requires_phishing_resistant(rule):
        return None
    return float(age)


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    """One remembered device: whose, after which first factor, until when; ``token_hash`` finds it."""

    id: str
    user_id: str
    factor: str
    token_hash: str
    label: str
    created_at: float
    expires_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


class Refusal(enum.StrEnum):
    """Why a presented device did not stand in for the second factor (audit detail; a small fixed set)."""

    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    OTHER_USER = "other_user"
    OTHER_FACTOR = "other_factor"
    TOO_OLD = "too_old"


def judge(
    grant: DeviceGrant | None, *, presented: str, user_id: str, factor: str, max_age: float, now: float
) -> Refusal | None:
    """None if ``grant`` (found by the hash ``presented``) may stand in for ``user_id``'s second factor after
    ``factor`` on a rule accepting devices up to ``max_age`` old; otherwise why not."""
    if grant is None or not hmac.compare_digest(grant.token_hash.encode(), presented.encode()):
        return Refusal.UNKNOWN
    if grant.revoked_at is not None:
        return Refusal.REVOKED
    if now >= grant.expires_at:
        return Refusal.EXPIRED
    if not hmac.compare_digest(grant.user_id.encode(), user_id.encode()):
        return Refusal.OTHER_USER
    if grant.factor != factor:
        return Refusal.OTHER_FACTOR
    if now - grant.created_at > max_age:
        return Refusal.TOO_OLD
    return None


@dataclass(frozen=True, slots=True)
class DeviceMfa:
    """A remembered device stood in for the second factor ``at``; its grant was made at ``trusted_at`` and ends at
    ``expires_at``. Kept in the sealed session."""

    at: float
    trusted_at: float
    expires_at: float

    def satisfies(self, rule: Rule, now: float) -> bool:
        """Whether this stand-in counts as MFA for ``rule`` ``now``: the rule accepts devices this old, the grant has
        not ended, and for a rule with ``max_age`` the stand-in is fresh enough, as a code would have to be."""
        age = device_age(rule)
        if age is None or now >= self.expires_at or now - self.trusted_at > age:
            return False
        return rule.max_age is None or now - self.at <= rule.max_age


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_label(user_agent: str | None) -> str:
    """A short name for the account page, "Firefox on Linux", from a fixed vocabulary: no byte of the header is
    kept, so nothing a client sends is stored or shown."""
    agent = user_agent or ""
    browser = next((name for mark, name in _BROWSERS if mark in agent), "A browser")
    system = next((name for mark, name in _SYSTEMS if mark in agent), None)
    return f"{browser} on {system}" if system else browser
