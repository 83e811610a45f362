"""Trusted devices, the pure side: when a grant may stand in for the second factor, and what a session stepped up by
one is worth to each rule. Time is a plain number here; nothing sleeps."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import replace

import pytest

from mfa_gateway.core import devices
from mfa_gateway.core.decision import Allow, Challenge, ChallengeKind, FirstFactor, decide
from mfa_gateway.core.devices import DeviceGrant, DeviceMfa, Refusal, device_age, device_label, judge
from mfa_gateway.core.errors import Unauthenticated
from mfa_gateway.core.keyring import Keyring, new_keyring_document
from mfa_gateway.core.methods import DEVICE, has_mfa, phishing_resistant
from mfa_gateway.core.policy import Action, Rule
from mfa_gateway.core.session import PURPOSE, Session, open_sealed, seal

DAY = 86400.0
T0 = 1_800_000_000.0
TOKEN = devices.new_token()
GRANT = DeviceGrant(
    id="g1",
    user_id="alice",
    factor="pwd",
    token_hash=devices.token_hash(TOKEN),
    label="Firefox on Linux",
    created_at=T0,
    expires_at=T0 + 30 * DAY,
)
REMEMBERING = Rule("app", Action.MFA, remember_device=30 * DAY)
FORGETFUL = Rule("admin", Action.MFA)
FIRST_FACTOR = FirstFactor("alice", "hdr", "b1nd")


def judged(grant: DeviceGrant | None = GRANT, **changes: object) -> Refusal | None:
    asked: dict[str, object] = {
        "presented": devices.token_hash(TOKEN),
        "user_id": "alice",
        "factor": "pwd",
        "max_age": 30 * DAY,
        "now": T0 + DAY,
    }
    asked.update(changes)
    return judge(grant, **asked)  # type: ignore[arg-type]


def test_a_grant_within_its_age_stands_in_for_the_same_user_and_first_factor() -> None:
    """The grant's own user, after the same first factor, within the rule's age and the grant's expiry: accepted."""
    assert judged() is None
    assert judged(now=T0 + 30 * DAY - 1) is None


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"now": T0 + 30 * DAY}, Refusal.EXPIRED),  # the grant's own end, and after
        ({"now": T0 + 31 * DAY}, Refusal.EXPIRED),
        ({"max_age": DAY, "now": T0 + DAY + 1}, Refusal.TOO_OLD),  # older than this rule accepts
        ({"user_id": "bob"}, Refusal.OTHER_USER),
        ({"user_id": "Alice"}, Refusal.OTHER_USER),
        ({"factor": "hdr"}, Refusal.OTHER_FACTOR),
        ({"presented": devices.token_hash(devices.new_token())}, Refusal.UNKNOWN),
    ],
)
def test_a_grant_never_stands_in_after_its_age_or_for_another_user_or_first_factor(
    changes: dict[str, object], refusal: Refusal
) -> None:
    """After its expiry, past the age the asking rule accepts, for another user (case counts: names are canonical
    already), after another first factor, or when the presented hash is not the grant's: refused, and why."""
    assert judged(**changes) is refusal


def test_a_revoked_or_unknown_grant_is_refused() -> None:
    """A revoked grant stays refused within its age; no grant at all is ``unknown``."""
    assert judged(replace(GRANT, revoked_at=T0 + 1)) is Refusal.REVOKED
    assert judged(None) is Refusal.UNKNOWN


def test_only_mfa_rules_that_opt_in_accept_remembered_devices() -> None:
    """``device_age`` is the rule's ``remember_device`` on an ``mfa`` rule; no value, 0, or another action: none."""
    assert device_age(REMEMBERING) == 30 * DAY
    assert device_age(FORGETFUL) is None
    assert device_age(Rule("zero", Action.MFA, remember_device=0.0)) is None
    assert device_age(Rule("who", Action.IDENTITY, remember_device=DAY)) is None


def test_a_rule_demanding_a_phishing_resistant_method_never_accepts_a_device() -> None:
    """On a rule that demands a phishing-resistant method, ``remember_device`` is ignored: no age, and a session a
    device stepped up is challenged there (the same rule without the demand lets it through)."""
    stepped = Session.start("alice", ("hdr",), now=T0, ttl=DAY, auth_time=T0, binding="b1nd").remembered(
        DeviceMfa(T0, T0, T0 + 30 * DAY)
    )
    assert isinstance(decide(REMEMBERING, FIRST_FACTOR, stepped, T0 + 1), Allow)
    strict = dataclasses.replace(REMEMBERING, phishing_resistant=True)
    assert device_age(strict) is None
    assert isinstance(decide(strict, FIRST_FACTOR, stepped, T0 + 1), Challenge)


def test_a_device_step_up_is_neither_mfa_nor_phishing_resistant_by_amr() -> None:
    """``device`` is not a second-factor ``amr`` value: whatever counts methods never mistakes it for MFA."""
    assert not has_mfa((DEVICE,)) and not phishing_resistant((DEVICE,))


def _session(device: DeviceMfa | None, mfa_time: float | None = None) -> Session:
    session = Session.start("alice", ("hdr",), now=T0, ttl=60 * DAY, auth_time=T0, binding="b1nd", mfa_time=mfa_time)
    return session.remembered(device) if device is not None else session


def test_a_session_stepped_up_by_a_device_passes_only_rules_that_accept_devices() -> None:
    """The stand-in is no MFA time: a rule without ``remember_device`` challenges for MFA; one with it allows."""
    session = _session(DeviceMfa(T0, T0, T0 + 30 * DAY))
    assert session.mfa_time is None and session.methods == ("hdr", DEVICE)
    assert isinstance(decide(REMEMBERING, FIRST_FACTOR, session, T0 + 60), Allow)
    refused = decide(FORGETFUL, FIRST_FACTOR, session, T0 + 60)
    assert isinstance(refused, Challenge) and refused.kind is ChallengeKind.MFA


def test_each_rule_judges_the_devices_age_on_every_request() -> None:
    """A grant made 20 days ago: a rule remembering 30 days accepts its session, one remembering 7 days does not,
    and none does once the grant has expired, whatever the session's own lifetime."""
    session = _session(DeviceMfa(at=T0 + 20 * DAY, trusted_at=T0, expires_at=T0 + 30 * DAY))
    week = Rule("week", Action.MFA, remember_device=7 * DAY)
    now = T0 + 20 * DAY + 60
    assert isinstance(decide(REMEMBERING, FIRST_FACTOR, session, now), Allow)
    assert isinstance(decide(week, FIRST_FACTOR, session, now), Challenge)
    assert isinstance(decide(REMEMBERING, FIRST_FACTOR, session, T0 + 30 * DAY), Challenge)


def test_freshness_rules_count_the_stand_in_as_an_mfa_at_that_moment() -> None:
    """On a rule with ``max_age`` that accepts devices, the stand-in is as fresh as the moment it happened; a real
    MFA older than ``max_age`` is not made fresh by a device on a rule that accepts none."""
    fresh = Rule("fresh", Action.MFA, max_age=600.0, remember_device=30 * DAY)
    strict = Rule("strict", Action.MFA, max_age=600.0)
    session = _session(DeviceMfa(T0 + 1000, T0, T0 + 30 * DAY), mfa_time=T0)
    assert isinstance(decide(fresh, FIRST_FACTOR, session, T0 + 1500), Allow)
    assert isinstance(decide(fresh, FIRST_FACTOR, session, T0 + 1601), Challenge)
    assert isinstance(decide(strict, FIRST_FACTOR, session, T0 + 1500), Challenge)


def test_the_device_stand_in_survives_sealing_and_a_malformed_one_does_not_open() -> None:
    """``device`` round-trips through the sealed cookie; a payload whose device record is not three numbers is an
    invalid session, not a session without the record."""
    keyring = Keyring.from_json(new_keyring_document("k1"))
    session = _session(DeviceMfa(T0 + 5, T0, T0 + 30 * DAY))
    assert open_sealed(seal(session, keyring), keyring, T0 + 10) == session
    plain = _session(None)
    assert open_sealed(seal(plain, keyring), keyring, T0 + 10).device is None
    for bad in ([T0, T0], ["x", T0, T0], {"at": T0}):
        payload = json.loads(keyring.decrypt(_raw(seal(session, keyring)), purpose=PURPOSE, context="").plaintext)
        payload["d"] = bad
        forged = base64.urlsafe_b64encode(
            keyring.encrypt(json.dumps(payload).encode(), purpose=PURPOSE, context="")
        ).decode()
        with pytest.raises(Unauthenticated):
            open_sealed(forged.rstrip("="), keyring, T0 + 10)


def _raw(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_tokens_are_random_well_formed_and_stored_only_as_hashes() -> None:
    """A token is 43 base64url characters of 256 random bits; its hash is SHA-256 hex; anything else is not a
    token (and is not looked up)."""
    first, second = devices.new_token(), devices.new_token()
    assert first != second and devices.well_formed(first)
    assert devices.token_hash(first) != first and len(devices.token_hash(first)) == 64
    for bad in ("", "x" * 42, "x" * 44, first[:-1] + "=", first[:-1] + "\u00e9", first + "\n"):
        assert not devices.well_formed(bad), bad


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
        ("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/126.0 Safari/537.36 Edg/126.0", "Edge on Windows"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Version/17.5 Mobile Safari/604.1", "Safari on iPhone"),
        ("<script>alert(1)</script>", "A browser"),
        (None, "A browser"),
    ],
)
def test_the_device_label_is_chosen_from_a_fixed_vocabulary(agent: str | None, label: str) -> None:
    """The account page's name for a device keeps no byte of the User-Agent header."""
    assert device_label(agent) == label
