"""The WebAuthn core: py_webauthn's verification with the gateway's own checks in front, on real signatures.

Answers come from the software authenticator (tests/helpers/webauthn.py), so every refusal below is a real
verification failing for one named reason, and every acceptance a real ES256 signature verifying.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mfa_gateway.core import webauthn
from mfa_gateway.core.errors import InvalidWebAuthnResponse, SignCounterRegressed
from mfa_gateway.core.model import WebAuthnCredential
from tests.helpers.webauthn import SoftAuthenticator

ORIGIN = "https://app.example.com"
RP = webauthn.RelyingParty(rp_id="example.com", name="Example", origins=(ORIGIN,))


def registered(authenticator: SoftAuthenticator, rp: webauthn.RelyingParty = RP) -> WebAuthnCredential:
    challenge = os.urandom(32)
    options = webauthn.registration_options(
        rp, user_name="alice", user_handle=os.urandom(32), challenge=challenge, existing=[]
    )
    new = webauthn.verify_registration(rp, authenticator.create(options), challenge)
    assert authenticator.user_handle is not None
    return WebAuthnCredential(
        credential_id=new.credential_id,
        user_id="alice",
        user_handle=authenticator.user_handle,
        public_key=new.public_key,
        sign_count=new.sign_count,
        transports=new.transports,
        backup_eligible=new.backup_eligible,
        backup_state=new.backup_state,
        aaguid=new.aaguid,
        name="key",
        created_at=0.0,
    )


def asserted(credential: WebAuthnCredential) -> tuple[bytes, dict[str, Any]]:
    challenge = os.urandom(32)
    return challenge, webauthn.authentication_options(RP, challenge=challenge, allowed=[credential])


def test_a_registered_credential_signs_in_and_its_counter_moves_forward() -> None:
    """Registration yields the credential's COSE key, flags and model; an assertion by the same key over a fresh
    challenge verifies and reports the counter it signed."""
    authenticator = SoftAuthenticator(ORIGIN, "example.com", backup_eligible=True, backed_up=True)
    credential = registered(authenticator)
    assert credential.credential_id == authenticator.credential_id
    assert (credential.backup_eligible, credential.backup_state, credential.transports) == (True, True, ("usb",))
    assert credential.aaguid == "00000000-0000-0000-0000-000000000000"
    challenge, options = asserted(credential)
    assert options["allowCredentials"][0]["id"] == webauthn.b64url(credential.credential_id)
    result = webauthn.verify_authentication(RP, authenticator.get(options), challenge, credential)
    assert (result.sign_count, result.user_verified) == (1, True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"origin": "https://app.example.com.evil.test"}, "origin"),
        ({"origin": "http://app.example.com"}, "origin"),
        ({"rp_id": "evil.test"}, "rp_id"),
        ({"present": False}, "user_presence"),
        ({"challenge": webauthn.b64url(b"another challenge")}, "challenge"),
        ({"user_handle": b"someone else"}, "user_handle"),
        ({"signing_key": ec.generate_private_key(ec.SECP256R1())}, "signature"),
    ],
)
def test_each_broken_rule_refuses_the_assertion_with_its_reason(change: dict[str, Any], reason: str) -> None:
    """A look-alike origin, another relying party id, no user presence, another challenge, another user's handle or
    a signature by another key: each is refused (InvalidWebAuthnResponse) with the reason the audit log records."""
    authenticator = SoftAuthenticator(ORIGIN, "example.com")
    credential = registered(authenticator)
    challenge, options = asserted(credential)
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        webauthn.verify_authentication(RP, authenticator.get(options, **change), challenge, credential)
    assert refused.value.reason == reason


def test_user_verification_is_enforced_only_when_required() -> None:
    """With user_verification preferred, a key without a PIN (UV flag clear) signs in; with required, the same
    answer is refused for user_verification, at registration and at sign-in alike."""
    authenticator = SoftAuthenticator(ORIGIN, "example.com", user_verifying=False)
    credential = registered(authenticator)
    challenge, options = asserted(credential)
    assert webauthn.verify_authentication(RP, authenticator.get(options), challenge, credential).user_verified is False
    strict = replace(RP, user_verification="required")
    challenge, options = asserted(credential)
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        webauthn.verify_authentication(strict, authenticator.get(options), challenge, credential)
    assert refused.value.reason == "user_verification"
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        registered(SoftAuthenticator(ORIGIN, "example.com", user_verifying=False), strict)
    assert refused.value.reason == "user_verification"


def test_a_counter_that_does_not_move_forward_is_refused_after_the_signature_verified() -> None:
    """A correctly signed assertion whose counter is not above the stored one raises SignCounterRegressed (its own
    code); a forged one with a low counter is a signature failure, never a counter event."""
    authenticator = SoftAuthenticator(ORIGIN, "example.com", counter=40)
    credential = replace(registered(authenticator), sign_count=41)
    challenge, options = asserted(credential)
    with pytest.raises(SignCounterRegressed):
        webauthn.verify_authentication(RP, authenticator.get(options, counter=41), challenge, credential)
    forged = authenticator.get(options, counter=3, signing_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(InvalidWebAuthnResponse) as refused:
        webauthn.verify_authentication(RP, forged, challenge, credential)
    assert refused.value.reason == "signature"


@pytest.mark.parametrize(
    ("stored", "reported", "regressed"),
    [(0, 0, False), (0, 1, False), (5, 6, False), (5, 5, True), (5, 4, True), (5, 0, True), (0, 2**32 - 1, False)],
)
def test_the_counter_rule(stored: int, reported: int, regressed: bool) -> None:
    """WebAuthn §6.1.1: once either side is non-zero the count must grow; two zeros (a passkey with no counter)
    are no evidence either way."""
    assert webauthn.counter_regressed(stored, reported) is regressed


def test_registration_refuses_another_origin_relying_party_or_challenge() -> None:
    """A registration answer made on a look-alike origin, for another relying party id, for another challenge or
    as an assertion instead of a creation is refused with its reason."""
    challenge = os.urandom(32)
    options = webauthn.registration_options(
        RP, user_name="alice", user_handle=os.urandom(32), challenge=challenge, existing=[]
    )
    for change, reason in (
        ({"origin": "https://evil.test"}, "origin"),
        ({"rp_id": "evil.test"}, "rp_id"),
        ({"challenge": webauthn.b64url(b"other")}, "challenge"),
        ({"present": False}, "user_presence"),
    ):
        answer = SoftAuthenticator(ORIGIN, "example.com").create(options, **change)
        with pytest.raises(InvalidWebAuthnResponse) as refused:
            webauthn.verify_registration(RP, answer, challenge)
        assert refused.value.reason == reason, change


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"id": "x", "rawId": "x"},
        {"id": "AAAA", "rawId": "AAAA", "response": "no"},
        {"id": "AAAA", "rawId": "AAAA", "response": {"clientDataJSON": "%%%", "authenticatorData": "AAAA"}},
        {"id": "AAAA", "rawId": "AAAA", "response": {"clientDataJSON": "bm90IGpzb24", "authenticatorData": ""}},
        {"id": "AAAA", "rawId": "AAAA", "response": {"clientDataJSON": "W10", "attestationObject": "oA"}},
        {"id": "AAAA", "rawId": "AAAB"},
        {"id": "A" * 3000, "rawId": "A" * 3000},
    ],
)
def test_malformed_answers_are_refusals_never_crashes(answer: dict[str, Any]) -> None:
    """Whatever shape an answer has (missing fields, wrong types, bad base64url, JSON that is not an object, CBOR
    that is not an attestation, an id over 1023 bytes), it is an InvalidWebAuthnResponse, never another error."""
    credential = registered(SoftAuthenticator(ORIGIN, "example.com"))
    with pytest.raises(InvalidWebAuthnResponse):
        webauthn.verify_authentication(RP, answer, os.urandom(32), replace(credential, credential_id=b"\x00\x00\x00"))
    with pytest.raises(InvalidWebAuthnResponse):
        webauthn.verify_registration(RP, answer, os.urandom(32))


def test_options_exclude_or_allow_exactly_the_users_credentials() -> None:
    """Registration options exclude the user's credentials (with their transports) and ask for what the relying
    party is set to; authentication options allow only the credentials given."""
    credential = registered(SoftAuthenticator(ORIGIN, "example.com"))
    options = webauthn.registration_options(
        replace(RP, user_verification="required", resident_key="discouraged", attestation="direct"),
        user_name="alice",
        user_handle=b"h",
        challenge=b"c" * 32,
        existing=[credential],
    )
    assert options["excludeCredentials"] == [
        {"id": webauthn.b64url(credential.credential_id), "type": "public-key", "transports": ["usb"]}
    ]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "discouraged"
    assert (options["attestation"], options["rp"], options["timeout"]) == (
        "direct",
        {"name": "Example", "id": "example.com"},
        120000,
    )
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
