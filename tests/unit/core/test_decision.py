"""The one access decision for rules that demand a phishing-resistant method (``phishing_resistant``), and beside
them the plain ``mfa`` rules they must not change.

A session (cookie) counts only if its methods include a phishing-resistant one (``hwk``) *and* it records when that
method was given; with ``max_age`` that time, not the last MFA of any kind, must be fresh. A bearer JWT counts by its
``amr`` (``phishing_resistant_time`` set from ``iat`` when ``amr`` holds ``hwk``, as ``web.identity`` reads it).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mfa_gateway.core.decision import Allow, Challenge, Decision, FirstFactor, decide, label_of
from mfa_gateway.core.policy import Action, Rule
from mfa_gateway.core.session import Session

SECURITY_KEY = Rule("admin", Action.MFA, path=r"^/admin(/|$)", phishing_resistant=True)
FRESH_KEY = Rule("payments", Action.MFA, max_age=300.0, phishing_resistant=True)
PLAIN = Rule("app", Action.MFA)
FRESH = Rule("reports", Action.MFA, max_age=300.0)
SIGNED_IN = FirstFactor("alice", "session", "")


def _session(*steps: tuple[str, float]) -> Session:
    """alice's session after a password at t=0, then each (method, time) step-up in turn."""
    session = Session.start("alice", ("pwd",), now=0.0, ttl=86400.0, auth_time=0.0)
    for method, at in steps:
        session = session.stepped_up(method, at)
    return session


def _jwt(*amr: str, issued_at: float = 0.0) -> FirstFactor:
    """A bearer JWT's first factor as ``web.identity`` builds it from the claims."""
    mfa = bool({"otp", "backup", "hwk"} & set(amr))
    return FirstFactor(
        "alice",
        "jwt",
        "",
        mfa_time=issued_at if mfa else None,
        phishing_resistant_time=issued_at if "hwk" in amr else None,
    )


def _kind(decision: Decision) -> str:
    if isinstance(decision, Allow):
        return "allow"
    assert isinstance(decision, Challenge)
    return decision.kind.value


@pytest.mark.parametrize(
    ("first_factor", "session", "expected"),
    [
        (SIGNED_IN, _session(("otp", 10.0)), "phishing_resistant"),
        (SIGNED_IN, _session(("backup", 10.0)), "phishing_resistant"),
        (SIGNED_IN, _session(("otp", 5.0), ("backup", 10.0)), "phishing_resistant"),
        (SIGNED_IN, _session(("device", 10.0)), "phishing_resistant"),
        (SIGNED_IN, _session(("otp", 5.0), ("device", 10.0)), "phishing_resistant"),
        (SIGNED_IN, _session(), "phishing_resistant"),
        (SIGNED_IN, None, "phishing_resistant"),
        (SIGNED_IN, _session(("hwk", 10.0)), "allow"),
        (SIGNED_IN, _session(("otp", 5.0), ("hwk", 10.0)), "allow"),
        (SIGNED_IN, _session(("hwk", 5.0), ("otp", 10.0)), "allow"),
        (_jwt("pwd", "otp"), None, "phishing_resistant"),
        (_jwt("pwd", "backup"), None, "phishing_resistant"),
        (_jwt("pwd"), None, "phishing_resistant"),
        (_jwt("pwd", "hwk"), None, "allow"),
        (None, None, "sign_in"),
    ],
    ids=[
        "totp-session",
        "backup-code-session",
        "totp-then-backup-session",
        "remembered-device-session",
        "totp-then-device-session",
        "first-factor-session",
        "no-session",
        "webauthn-session",
        "totp-then-webauthn-session",
        "webauthn-then-totp-session",
        "jwt-amr-otp",
        "jwt-amr-backup",
        "jwt-amr-pwd",
        "jwt-amr-hwk",
        "nobody",
    ],
)
def test_only_a_phishing_resistant_method_satisfies_the_rule(
    first_factor: FirstFactor | None, session: Session | None, expected: str
) -> None:
    """TOTP, backup codes and a remembered device never satisfy a phishing_resistant rule, alone or together; a
    WebAuthn step-up (``hwk``) does, before or after other methods; a JWT is judged by its amr. Whoever is signed in
    and refused gets the distinct challenge, coded phishing_resistant_required, never an allow."""
    decision = decide(SECURITY_KEY, first_factor, session, now=20.0)
    assert _kind(decision) == expected
    if expected == "phishing_resistant":
        assert label_of(decision) == "phishing_resistant_required"
        assert isinstance(decision, Challenge) and decision.user_id == "alice"


def test_the_same_sessions_pass_a_plain_mfa_rule() -> None:
    """The demand is the rule's, not a change to MFA: a TOTP, backup-code or WebAuthn session passes a plain mfa
    rule, and a session without MFA is challenged for MFA (mfa_required) as before."""
    for session in (_session(("otp", 10.0)), _session(("backup", 10.0)), _session(("hwk", 10.0))):
        assert isinstance(decide(PLAIN, SIGNED_IN, session, now=20.0), Allow)
    refused = decide(PLAIN, SIGNED_IN, _session(), now=20.0)
    assert _kind(refused) == "mfa" and label_of(refused) == "mfa_required"


def test_methods_alone_do_not_count_without_the_time_of_the_key() -> None:
    """A session whose methods say hwk but which records no phishing-resistant time (a cookie sealed before this
    field existed) is refused: the decision needs to know when the key was used, and fails closed without it."""
    stepped = _session(("hwk", 10.0))
    unknown = replace(stepped, phishing_resistant_time=None)
    assert _kind(decide(SECURITY_KEY, SIGNED_IN, unknown, now=20.0)) == "phishing_resistant"
    claimed = replace(_session(("otp", 10.0)), phishing_resistant_time=10.0)  # a time without hwk in methods
    assert _kind(decide(SECURITY_KEY, SIGNED_IN, claimed, now=20.0)) == "phishing_resistant"


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ((("hwk", 0.0),), 300.0, "allow"),
        ((("hwk", 0.0),), 301.0, "phishing_resistant"),
        ((("hwk", 0.0), ("otp", 200.0)), 250.0, "allow"),
        ((("hwk", 0.0), ("otp", 200.0)), 400.0, "phishing_resistant"),
        ((("hwk", 0.0), ("device", 200.0)), 400.0, "phishing_resistant"),
        ((("otp", 0.0), ("hwk", 200.0)), 400.0, "allow"),
        ((("hwk", 0.0), ("otp", 100.0), ("hwk", 350.0)), 600.0, "allow"),
    ],
    ids=[
        "key-just-fresh",
        "key-just-stale",
        "key-fresh-after-totp",
        "totp-cannot-refresh-an-old-key",
        "device-cannot-refresh-an-old-key",
        "key-after-totp",
        "key-used-again",
    ],
)
def test_with_max_age_the_key_itself_must_be_fresh(
    steps: tuple[tuple[str, float], ...], now: float, expected: str
) -> None:
    """With max_age 300, what must be fresh is the last use of the security key. The tricky case: a key at t=0 and
    a TOTP step-up at t=200 leave the session's mfa_time fresh at t=400 (a plain max_age rule passes), but the key is
    400 s old: refused. Using the key again makes it fresh again."""
    session = _session(*steps)
    assert _kind(decide(FRESH_KEY, SIGNED_IN, session, now=now)) == expected
    if steps[-1][0] == "otp" and expected == "phishing_resistant":
        assert isinstance(decide(FRESH, SIGNED_IN, session, now=now), Allow), "the TOTP step-up is fresh MFA"


def test_a_jwt_is_as_fresh_as_it_was_issued() -> None:
    """A bearer JWT whose amr has hwk was issued when the key was used (iat): with max_age 300 it passes until
    then and is challenged after."""
    token = _jwt("pwd", "hwk", issued_at=100.0)
    assert isinstance(decide(FRESH_KEY, token, None, now=400.0), Allow)
    assert _kind(decide(FRESH_KEY, token, None, now=401.0)) == "phishing_resistant"
