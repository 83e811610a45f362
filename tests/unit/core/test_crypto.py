"""Backup codes, the keyring, sealed sessions, JWTs and the masked Secret type."""

from __future__ import annotations

import base64
import json
import math

import jwt
import pytest

from mfa_gateway.core import backup_codes
from mfa_gateway.core.errors import Unauthenticated
from mfa_gateway.core.hashing import Argon2Params, Hasher
from mfa_gateway.core.keyring import Keyring, KeyringError, new_keyring_document
from mfa_gateway.core.secret import Secret
from mfa_gateway.core.session import Session, new_session_id, open_sealed, seal
from mfa_gateway.core.tokens import SigningKeyError, SigningKeys, new_signing_key_document


def test_backup_codes_are_ten_distinct_readable_codes_of_at_least_50_bits() -> None:
    """Ten codes by default, XXXX-XXXX-XXXX from a 32-symbol alphabet: 60 bits, 50 behind the public bucket."""
    codes = backup_codes.generate()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4]
        assert all(ch in backup_codes.ALPHABET for ch in "".join(groups))
    secret_bits = (backup_codes.LENGTH - backup_codes.BUCKET_SYMBOLS) * math.log2(len(backup_codes.ALPHABET))
    assert secret_bits >= 50


def test_backup_code_input_is_normalised() -> None:
    """Case, spaces, dashes and the look-alikes O/I/L are forgiven; anything else is not a code."""
    assert backup_codes.normalise("abcd-ef01-23gh") == "ABCDEF0123GH"
    assert backup_codes.normalise(" AbCd Ef0I 23gh ") == "ABCDEF0123GH"
    assert backup_codes.normalise("abcd-efol-23gh") == "ABCDEF0123GH"
    for bad in ("ABCD-EF01-23G", "ABCD-EF01-23GHX", "ABCD-EF01-23G!", "ABCD-EF01-23GU", "A" * 100):
        assert backup_codes.normalise(bad) is None


def test_backup_code_hash_is_salted_argon2id() -> None:
    """The stored form is an Argon2id hash that differs per hashing (salted) and verifies only the right code."""
    hasher = Hasher(Argon2Params(time_cost=1, memory_kib=8192, parallelism=1))
    first, second = hasher.hash("ABCDEF0123GH"), hasher.hash("ABCDEF0123GH")
    assert first.startswith("$argon2id$") and first != second
    assert hasher.matches(first, "ABCDEF0123GH") and not hasher.matches(first, "ABCDEF0123GJ")
    assert not hasher.matches("not a hash", "ABCDEF0123GH")


def _keyring_doc(primary: str, keys: dict[str, str]) -> str:
    return json.dumps(
        {
            "primary": primary,
            "keys": [
                {"kid": kid, "k": base64.urlsafe_b64encode(bytes([i]) * 32).decode(), "status": status}
                for i, (kid, status) in enumerate(keys.items(), start=1)
            ],
        }
    )


def test_keyring_binds_ciphertext_to_purpose_and_user() -> None:
    """A ciphertext opens only for the purpose and user it was sealed for, and reports its key id."""
    keyring = Keyring.from_json(new_keyring_document("k1"))
    sealed = keyring.encrypt(b"JBSWY3DPEHPK3PXP", purpose="totp-secret", context="alice")
    assert keyring.decrypt(sealed, purpose="totp-secret", context="alice").kid == "k1"
    for purpose, context in (("totp-secret", "bob"), ("session", "alice")):
        with pytest.raises(KeyringError):
            keyring.decrypt(sealed, purpose=purpose, context=context)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(KeyringError):
        keyring.decrypt(tampered, purpose="totp-secret", context="alice")


def test_keyring_rotation_old_keys_decrypt_until_disabled() -> None:
    """The primary encrypts; a decrypt-only key still opens old data; a disabled key opens nothing."""
    old = Keyring.from_json(_keyring_doc("a", {"a": "active"}))
    sealed = old.encrypt(b"secret", purpose="p", context="u")
    rotated = Keyring.from_json(_keyring_doc("b", {"a": "decrypt-only", "b": "active"}))
    assert rotated.decrypt(sealed, purpose="p", context="u").kid == "a"
    assert rotated.decrypt(rotated.encrypt(b"x", purpose="p", context="u"), purpose="p", context="u").kid == "b"
    retired = Keyring.from_json(_keyring_doc("b", {"a": "disabled", "b": "active"}))
    with pytest.raises(KeyringError):
        retired.decrypt(sealed, purpose="p", context="u")


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        '{"keys": []}',
        _keyring_doc("x", {"a": "active"}),
        _keyring_doc("a", {"a": "decrypt-only"}),
        json.dumps({"primary": "a", "keys": [{"kid": "a", "k": "c2hvcnQ", "status": "active"}]}),
    ],
)
def test_invalid_keyrings_are_refused_without_echoing_key_material(document: str) -> None:
    """Malformed keyrings raise KeyringError whose message holds no key bytes."""
    with pytest.raises(KeyringError) as info:
        Keyring.from_json(document)
    assert "AQEBAQ" not in str(info.value) and "c2hvcnQ" not in str(info.value)


def _session(expires_at: float = 2000.0) -> Session:
    return Session(
        user_id="alice",
        sid=new_session_id(),
        auth_time=1000.0,
        methods=("pwd",),
        issued_at=1000.0,
        expires_at=expires_at,
        binding="b1",
    )


def test_sealed_session_round_trips_and_rejects_tampering_and_expiry() -> None:
    """A sealed session opens to the same fields; a flipped byte, another keyring, or expiry is refused."""
    keyring = Keyring.from_json(new_keyring_document("s1"))
    session = _session()
    value = seal(session, keyring)
    assert open_sealed(value, keyring, 1500.0) == session
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[-3] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for candidate, ring, now in (
        (forged, keyring, 1500.0),
        (value, Keyring.from_json(new_keyring_document("s1")), 1500.0),
        (value, keyring, 2000.0),
        ("garbage!", keyring, 1500.0),
    ):
        with pytest.raises(Unauthenticated):
            open_sealed(candidate, ring, now)


def test_the_phishing_resistant_time_survives_the_cookie() -> None:
    """A session stepped up with a security key opens with the time of that step-up; one without opens with none
    (and its cookie does not carry the field at all)."""
    keyring = Keyring.from_json(new_keyring_document("s1"))
    with_key = _session().stepped_up("hwk", 1200.0)
    assert open_sealed(seal(with_key, keyring), keyring, 1500.0).phishing_resistant_time == 1200.0
    with_code = _session().stepped_up("otp", 1200.0)
    assert open_sealed(seal(with_code, keyring), keyring, 1500.0).phishing_resistant_time is None
    assert len(seal(with_code, keyring)) < len(seal(with_key, keyring))


def test_step_up_changes_the_session_id() -> None:
    """Every change of authentication level issues a new session id."""
    session = _session()
    stepped = session.stepped_up("otp", 1200.0)
    assert stepped.sid != session.sid and stepped.methods == ("pwd", "otp") and stepped.mfa_time == 1200.0


def _claims(now: float) -> dict[str, object]:
    return {
        "iss": "gw",
        "aud": "app",
        "sub": "alice",
        "iat": int(now),
        "exp": int(now) + 600,
        "auth_time": int(now),
        "amr": ["pwd", "otp"],
    }


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_jwt_carries_kid_and_verifies_with_injected_time(alg: str) -> None:
    """Tokens carry the active kid; they verify until exp (plus skew) by the injected clock, not the wall clock."""
    keys = SigningKeys.from_json(new_signing_key_document("k-" + alg, alg))
    token = keys.issue(_claims(1000.0))
    assert jwt.get_unverified_header(token)["kid"] == "k-" + alg
    assert keys.verify(token, now=1500.0, issuer="gw", audience="app")["amr"] == ("pwd", "otp")
    with pytest.raises(Unauthenticated):
        keys.verify(token, now=1000.0 + 600 + 31, issuer="gw", audience="app")
    with pytest.raises(Unauthenticated):
        keys.verify(token, now=1500.0, issuer="gw", audience="other")


def test_a_remembered_token_is_still_judged_every_time() -> None:
    """Verified tokens are remembered, never trusted blindly: a remembered token still expires by the injected
    clock, a tampered copy is verified on its own (and refused), a caller changing the claims it got back changes
    nothing, and a key document without the token's key (a rotation builds a new one) refuses it."""
    document = json.loads(new_signing_key_document("k1"))
    keys = SigningKeys.from_json(json.dumps(document))
    token = keys.issue(_claims(1000.0))
    claims = keys.verify(token, now=1100.0, issuer="gw", audience="app")
    claims["sub"] = "mallory"
    with pytest.raises(AttributeError):
        claims["amr"].append("otp")  # type: ignore[attr-defined]  # remembered lists are tuples
    again = keys.verify(token, now=1100.0, issuer="gw", audience="app")
    assert (again["sub"], list(again["amr"])) == ("alice", ["pwd", "otp"])
    for respelled in (token + "==", token + "!", f" {token}", token.replace(".", ". ", 1)):
        with pytest.raises(Unauthenticated):  # one token, one spelling (and one cache entry)
            keys.verify(respelled, now=1100.0, issuer="gw", audience="app")
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    with pytest.raises(Unauthenticated):
        keys.verify(tampered, now=1100.0, issuer="gw", audience="app")
    with pytest.raises(Unauthenticated):
        keys.verify(token, now=1000.0 + 600 + 31, issuer="gw", audience="app")
    document["keys"][0]["kid"] = "k2"
    with pytest.raises(Unauthenticated):
        SigningKeys.from_json(json.dumps(document)).verify(token, now=1100.0, issuer="gw", audience="app")


def test_jwt_from_another_key_or_alg_none_is_refused() -> None:
    """A token signed by an unknown key, with a swapped kid, or with alg none never verifies."""
    keys = SigningKeys.from_json(new_signing_key_document("k1"))
    stranger = SigningKeys.from_json(new_signing_key_document("k1"))
    unsigned = jwt.encode(_claims(1000.0), key=None, algorithm="none", headers={"kid": "k1"})
    for token in (stranger.issue(_claims(1000.0)), unsigned):
        with pytest.raises(Unauthenticated):
            keys.verify(token, now=1100.0, issuer="gw", audience="app")


def test_signing_keys_need_exactly_one_active_key() -> None:
    """A set with no active key or a key that does not match its alg is refused."""
    doc = json.loads(new_signing_key_document("k1"))
    doc["keys"][0]["status"] = "retiring"
    with pytest.raises(SigningKeyError):
        SigningKeys.from_json(json.dumps(doc))
    doc["keys"][0].update(status="active", alg="ES256")
    with pytest.raises(SigningKeyError):
        SigningKeys.from_json(json.dumps(doc))


def test_secret_never_prints() -> None:
    """repr, str and f-strings of a Secret show a mask, and it refuses to be pickled."""
    import pickle

    secret = Secret("hunter2-hunter2")
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])
    assert secret.reveal() == "hunter2-hunter2"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_a_started_session_is_new_issued_and_seen_now() -> None:
    """Every session begins the same way: a fresh id, issued and last seen now (so the first request after a sign-in
    does not re-seal the cookie), expiring ttl seconds later."""
    first = Session.start("alice", ("pwd",), now=1000.0, ttl=600.0, auth_time=990.0)
    second = Session.start("alice", ("pwd",), now=1000.0, ttl=600.0, auth_time=990.0)
    assert first.sid != second.sid
    assert (first.issued_at, first.last_seen, first.expires_at, first.auth_time) == (1000.0, 1000.0, 1600.0, 990.0)
