"""WebAuthn ceremonies (W3C Web Authentication, Level 2) as pure functions over py_webauthn.

The relying party's settings come in as a ``RelyingParty``, the challenge as bytes the caller made and keeps, the
browser's answer as the JSON it sent; nothing here reads a clock, a store or shared state. Verification is
py_webauthn's, with real cryptography; in front of it a few checks of our own (type, challenge, origin, relying
party id, presence and verification flags, user handle) give each refusal a stable ``reason`` for the audit log,
without reading py_webauthn's messages. The signature counter is judged here too (``counter_regressed``), after the
signature verified, so a counter can never be moved or refused by an answer that is not the authenticator's.

The relying party and its origin rules live in ``core.relying_party``, base64url and credential ids in
``core.webauthn_encoding``: pure modules the configuration and the web layer use without loading py_webauthn, which
this module imports (the runtime imports it only when WebAuthn is on). Their names are re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import options_to_json_dict, parse_attestation_object, parse_authenticator_data
from webauthn.helpers import parse_client_data_json as _parse_client_data
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorDataFlags,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from mfa_gateway.core.errors import InvalidWebAuthnResponse, SignCounterRegressed
from mfa_gateway.core.model import WebAuthnCredential
from mfa_gateway.core.relying_party import (
    Attestation,
    RelyingParty,
    ResidentKey,
    UserVerification,
    host_of,
    is_localhost,
    parse_origin,
    rp_id_problem,
)
from mfa_gateway.core.webauthn_encoding import MAX_CREDENTIAL_ID, b64url, credential_id_of, from_b64url

__all__ = [
    "ALGORITHMS",
    "CHALLENGE_BYTES",
    "MAX_CREDENTIAL_ID",
    "TRANSPORTS",
    "Assertion",
    "Attestation",
    "NewCredential",
    "RelyingParty",
    "ResidentKey",
    "UserVerification",
    "authentication_options",
    "b64url",
    "counter_regressed",
    "credential_id_of",
    "from_b64url",
    "host_of",
    "is_localhost",
    "parse_origin",
    "registration_options",
    "rp_id_problem",
    "verify_authentication",
    "verify_registration",
]

ALGORITHMS = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)
"""Signature algorithms offered, in order of preference: ES256 (every security key and platform), Ed25519, RS256
(Windows Hello)."""

TRANSPORTS = frozenset(transport.value for transport in AuthenticatorTransport)
"""Transport hints kept with a credential; anything else an answer names is dropped (a bounded set)."""

CHALLENGE_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What a verified registration yields for the store (the caller adds the user, the name and the time)."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    aaguid: str
    user_verified: bool


@dataclass(frozen=True, slots=True)
class Assertion:
    """A verified authentication: the counter the authenticator reported, and its flags."""

    sign_count: int
    backup_state: bool
    user_verified: bool


# -- options -----------------------------------------------------------------------------------------------------


def _descriptors(credentials: Sequence[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=credential.credential_id,
            transports=[AuthenticatorTransport(t) for t in credential.transports if t in TRANSPORTS] or None,
        )
        for credential in credentials
    ]


def registration_options(
    rp: RelyingParty,
    *,
    user_name: str,
    user_handle: bytes,
    challenge: bytes,
    existing: Sequence[WebAuthnCredential],
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON for ``navigator.credentials.create``: the user's existing
    credentials excluded (an authenticator that holds one says so instead of registering twice)."""
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_name=user_name,
        user_id=user_handle,
        user_display_name=user_name,
        challenge=challenge,
        timeout=int(rp.timeout * 1000),
        attestation=AttestationConveyancePreference(rp.attestation),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(rp.resident_key),
            require_resident_key=rp.resident_key == "required",
            user_verification=UserVerificationRequirement(rp.user_verification),
        ),
        exclude_credentials=_descriptors(existing),
        supported_pub_key_algs=list(ALGORITHMS),
    )
    return options_to_json_dict(options)


def authentication_options(
    rp: RelyingParty, *, challenge: bytes, allowed: Sequence[WebAuthnCredential]
) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` as JSON for ``navigator.credentials.get``: only the user's own
    credentials are allowed."""
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=int(rp.timeout * 1000),
        allow_credentials=_descriptors(allowed),
        user_verification=UserVerificationRequirement(rp.user_verification),
    )
    return options_to_json_dict(options)


# -- verification ------------------------------------------------------------------------------------------------


def _field(response: Mapping[str, Any], name: str) -> bytes:
    inner = response.get("response")
    if not isinstance(inner, Mapping):
        raise InvalidWebAuthnResponse("malformed")
    try:
        return from_b64url(inner.get(name))
    except ValueError:
        raise InvalidWebAuthnResponse("malformed") from None


def _check_client_data(rp: RelyingParty, raw: bytes, kind: str, challenge: bytes) -> None:
    try:
        client_data = _parse_client_data(raw)
    except Exception:  # noqa: BLE001 - any failure to read it is a malformed answer, never a 500
        raise InvalidWebAuthnResponse("malformed") from None
    if client_data.type != kind:
        raise InvalidWebAuthnResponse("type")
    if not hmac.compare_digest(client_data.challenge, challenge):
        raise InvalidWebAuthnResponse("challenge")
    if client_data.origin not in rp.origins or client_data.cross_origin:
        raise InvalidWebAuthnResponse("origin")  # a look-alike site, or a ceremony run inside a cross-origin frame


def _check_flags(rp: RelyingParty, rp_id_hash: bytes, flags: AuthenticatorDataFlags) -> None:
    if not hmac.compare_digest(rp_id_hash, hashlib.sha256(rp.rp_id.encode()).digest()):
        raise InvalidWebAuthnResponse("rp_id")
    if not flags.up:
        raise InvalidWebAuthnResponse("user_presence")
    if rp.require_uv and not flags.uv:
        raise InvalidWebAuthnResponse("user_verification")


def verify_registration(rp: RelyingParty, response: Mapping[str, Any], challenge: bytes) -> NewCredential:
    """Verify the answer to ``navigator.credentials.create`` for ``challenge``: ``InvalidWebAuthnResponse`` (with a
    reason) unless py_webauthn accepts it for this relying party, its origins and its verification setting."""
    credential_id_of(response)
    _check_client_data(rp, _field(response, "clientDataJSON"), "webauthn.create", challenge)
    try:
        auth_data = parse_attestation_object(_field(response, "attestationObject")).auth_data
    except InvalidWebAuthnResponse:
        raise
    except Exception:  # noqa: BLE001 - CBOR and structure errors of an untrusted object
        raise InvalidWebAuthnResponse("malformed") from None
    _check_flags(rp, auth_data.rp_id_hash, auth_data.flags)
    try:
        verified = verify_registration_response(
            credential=dict(response),
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_verification=rp.require_uv,
            supported_pub_key_algs=list(ALGORITHMS),
        )
    except Exception:  # noqa: BLE001 - py_webauthn raises its own and its parsers' errors alike: all are refusals
        raise InvalidWebAuthnResponse("attestation") from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID:
        raise InvalidWebAuthnResponse("malformed")
    inner = response.get("response")
    named = inner.get("transports") if isinstance(inner, Mapping) else None
    transports = tuple(sorted({t for t in named if t in TRANSPORTS})) if isinstance(named, list) else ()
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        backup_eligible=auth_data.flags.be,
        backup_state=verified.credential_backed_up,
        aaguid=verified.aaguid,
        user_verified=verified.user_verified,
    )


def verify_authentication(
    rp: RelyingParty, response: Mapping[str, Any], challenge: bytes, credential: WebAuthnCredential
) -> Assertion:
    """Verify the answer to ``navigator.credentials.get`` for ``challenge`` with the stored ``credential`` (the one
    its ``rawId`` names). The counter rule comes last, once the signature is known to be the authenticator's:
    ``SignCounterRegressed`` if it did not move forward (``counter_regressed``)."""
    if not hmac.compare_digest(credential_id_of(response), credential.credential_id):
        raise InvalidWebAuthnResponse("unknown_credential")
    _check_client_data(rp, _field(response, "clientDataJSON"), "webauthn.get", challenge)
    try:
        auth_data = parse_authenticator_data(_field(response, "authenticatorData"))
    except InvalidWebAuthnResponse:
        raise
    except Exception:  # noqa: BLE001 - structure errors of untrusted bytes
        raise InvalidWebAuthnResponse("malformed") from None
    _check_flags(rp, auth_data.rp_id_hash, auth_data.flags)
    inner = response.get("response")
    handle = inner.get("userHandle") if isinstance(inner, Mapping) else None
    if handle is not None:  # present (a discoverable credential): it must name the credential's own user
        try:
            matches = hmac.compare_digest(from_b64url(handle), credential.user_handle)
        except ValueError:
            matches = False
        if not matches:
            raise InvalidWebAuthnResponse("user_handle")
    try:
        verified = verify_authentication_response(
            credential=dict(response),
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=credential.public_key,
            # 0: py_webauthn's own counter check is off; ours below runs on a verified signature and has a reason.
            credential_current_sign_count=0,
            require_user_verification=rp.require_uv,
        )
    except Exception:  # noqa: BLE001 - py_webauthn raises its own and its parsers' errors alike: all are refusals
        raise InvalidWebAuthnResponse("signature") from None
    if counter_regressed(credential.sign_count, verified.new_sign_count):
        raise SignCounterRegressed()
    return Assertion(
        sign_count=verified.new_sign_count,
        backup_state=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )


def counter_regressed(stored: int, reported: int) -> bool:
    """WebAuthn's signature counter rule (L2 §6.1.1): once either side is non-zero, the reported count must be
    greater than the stored one; equal or lower means a cloned authenticator, or a replay. Many passkeys report 0
    for ever: with both 0 there is nothing to compare and the rule does not apply."""
    return (stored > 0 or reported > 0) and reported <= stored
