"""How long a front proxy may reuse an allowed answer (``reusable_for``): never longer than any bound, and never an
answer that names nobody or rests on a credential the proxy's cache key does not hold."""

from __future__ import annotations

import pytest

from mfa_gateway.core.decision import PROXY_CLOCK_SLACK, Allow, FirstFactor, reusable_for
from mfa_gateway.core.policy import Action, Rule
from mfa_gateway.core.session import Session

NOW = 1_800_000_000.0
IDLE = 1800.0
MFA = Rule("admin", Action.MFA)
FRESH = Rule("admin", Action.MFA, max_age=600)
IDENTITY = Rule("app", Action.IDENTITY)


def session(*, seen: float = 0.0, expires: float = 43200.0, mfa: float | None = 0.0) -> Session:
    """A session of alice, last seen ``seen`` seconds ago, ending in ``expires``, stepped up ``mfa`` seconds ago."""
    return Session(
        "alice",
        "sid-1",
        NOW - 2000,
        ("pwd", "otp"),
        issued_at=NOW - 2000,
        expires_at=NOW + expires,
        mfa_time=None if mfa is None else NOW - mfa,
        last_seen=NOW - seen,
    )


def allowed(rule: Rule, opened: Session | None) -> Allow:
    return Allow(rule, "alice", None, (), ("pwd", "otp"), opened)


COOKIE = FirstFactor("alice", "session", "")


@pytest.mark.parametrize(
    ("rule", "opened", "factor", "limit", "expected"),
    [
        (MFA, session(), COOKIE, 30, 30),  # the limit
        (MFA, session(seen=1795), COOKIE, 30, 5),  # idle timeout in 5 s
        (MFA, session(expires=7.5), COOKIE, 30, 7),  # absolute end in 7.5 s
        (FRESH, session(mfa=590.5), COOKIE, 30, 9),  # max_age reached in 9.5 s
        (IDENTITY, session(mfa=None), COOKIE, 30, 30),  # no MFA asked: no freshness bound
        (MFA, None, FirstFactor("alice", "jwt", "", mfa_time=NOW, token_expires=NOW + 12.9), 30, 12),
        (FRESH, None, FirstFactor("alice", "jwt", "", mfa_time=NOW - 595, token_expires=NOW + 900), 30, 5),
        (MFA, session(), FirstFactor(None, "app", "b"), 30, 30),  # upstream_login: the app cookie is in the key
    ],
)
def test_an_answer_is_reusable_one_second_short_of_its_nearest_bound(
    rule: Rule, opened: Session | None, factor: FirstFactor, limit: float, expected: float
) -> None:
    """The reuse time is the least of the limit, the session's idle and absolute time left, the token's and the
    rule's freshness left, rounded down, less one second for the proxy's whole-second clock."""
    assert reusable_for(allowed(rule, opened), factor, NOW, IDLE, limit) == expected - PROXY_CLOCK_SLACK


@pytest.mark.parametrize(
    ("allow", "factor"),
    [
        (Allow(Rule("public", Action.BYPASS)), None),  # names nobody
        (allowed(MFA, session()), FirstFactor("alice", "hdr", "b")),  # a trusted proxy's header: not in the key
        (allowed(MFA, session()), None),
        (allowed(FRESH, None), FirstFactor("alice", "jwt", "", token_expires=NOW + 900)),  # no MFA time to count from
        (allowed(MFA, session(seen=1799)), COOKIE),  # less than two seconds left
        (allowed(MFA, session(expires=1.5)), COOKIE),
    ],
)
def test_some_answers_are_never_reusable(allow: Allow, factor: FirstFactor | None) -> None:
    """A bypass, a trusted header's identity, an answer without its first factor, a freshness that cannot be
    counted, and any answer with less than two seconds left: 0, whatever the limit."""
    assert reusable_for(allow, factor, NOW, IDLE, 300) == 0


def test_nothing_is_reusable_when_the_limit_is_off() -> None:
    """A limit of 0 (forward_auth.cache_ttl off) marks nothing reusable."""
    assert reusable_for(allowed(MFA, session()), COOKIE, NOW, IDLE, 0) == 0
