"""Gateway-issued JWTs (pyjwt), signed with EdDSA (Ed25519) or ES256 keys that carry a ``kid``.

Signing keys are one JSON document; keys are parsed (and public keys derived) once, when the document is loaded,
never per token::

    {"keys": [{"kid": "sig-2026-11", "alg": "EdDSA", "status": "active", "private_key": "-----BEGIN PRIVATE KEY-----…"},
              {"kid": "sig-2026-05", "alg": "EdDSA", "status": "retiring", "private_key": "…"}]}

Exactly one key is ``active`` and signs; ``next`` and ``retiring`` keys are published in the JWKS and verify.
Time is passed in: pyjwt's own clock is switched off and ``exp``/``nbf`` are checked against ``now``.

A bearer token comes back with every request of an API client, so a token whose signature, issuer and audience
verified is remembered (per ``SigningKeys``, which a key rotation replaces); its times are checked on every call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from mfa_gateway.core.errors import Unauthenticated

ALGORITHMS = ("EdDSA", "ES256")
STATUSES = ("next", "active", "retiring")
_CLOCK_SKEW = 30.0

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
VERIFIED_CACHE_SIZE = 4096
"""Tokens whose signature verified, remembered per key document (a token is under 1 KiB: a few MiB at most)."""
MAX_TOKEN_LENGTH = 4096
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class SigningKeyError(Exception):
    """The signing-key document is invalid. Messages never include key material."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    status: str
    private_key: PrivateKey
    public_key: PublicKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.public_key
        jwk: dict[str, Any]
        if isinstance(public, ed25519.Ed25519PublicKey):
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


class SigningKeys:
    def __init__(self, keys: Sequence[SigningKey]) -> None:
        active = [key for key in keys if key.status == "active"]
        if len(active) != 1:
            raise SigningKeyError("exactly one signing key must have status 'active'")
        self.active = active[0]
        self._by_kid = {key.kid: key for key in keys}
        if len(self._by_kid) != len(keys):
            raise SigningKeyError("signing key ids must be unique")
        self._verified: dict[tuple[str, str, str], dict[str, Any]] = {}

    @classmethod
    def from_json(cls, document: str | bytes) -> SigningKeys:
        try:
            entries = json.loads(document)["keys"]
            keys = [_load_key(entry) for entry in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise SigningKeyError(
                'signing keys must be JSON {"keys": [{"kid", "alg", "status", "private_key" (PKCS#8 PEM)}]}'
            ) from exc
        return cls(keys)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._by_kid.values()]}

    def issue(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.active.private_key, algorithm=self.active.alg, headers={"kid": self.active.kid}
        )

    def verify(self, token: str, *, now: float, issuer: str, audience: str) -> dict[str, Any]:
        """The claims of a valid token, or ``Unauthenticated(invalid_token)``.

        Only a token in the compact form (three unpadded base64url parts, at most ``MAX_TOKEN_LENGTH``) is looked
        at, so one token has one spelling and one cache entry. Remembered claims hold no mutable value (lists
        become tuples) and callers get a copy, so nothing a caller does changes what the next request sees."""
        if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
            raise Unauthenticated("The token is not valid.", code="invalid_token")
        known = (token, issuer, audience)
        claims = self._verified.get(known)
        if claims is None:
            claims = _frozen_claims(self._verify_signed(token, issuer=issuer, audience=audience))
            _check_times(claims, now)  # an expired token is refused and never remembered
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[known] = claims
        else:
            _check_times(claims, now)
        return dict(claims)

    def _verify_signed(self, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._by_kid.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthenticated("The token is not valid.", code="invalid_token")
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.alg],
                audience=audience,
                issuer=issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iat", "sub", "auth_time", "amr"],
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated("The token is not valid.", code="invalid_token") from exc
        return claims


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    if not isinstance(claims["exp"], int | float) or now > claims["exp"] + _CLOCK_SKEW:
        raise Unauthenticated("The token has expired.", code="invalid_token")
    if not isinstance(claims["iat"], int | float) or claims["iat"] > now + _CLOCK_SKEW:
        raise Unauthenticated("The token is not valid yet.", code="invalid_token")


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    return value


def _frozen_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _frozen(value) for name, value in claims.items()}


def _load_key(entry: Mapping[str, Any]) -> SigningKey:
    alg = entry["alg"]
    status = entry.get("status", "active")
    if alg not in ALGORITHMS:
        raise SigningKeyError(f"key {entry.get('kid')!r}: alg must be one of {', '.join(ALGORITHMS)}")
    if status not in STATUSES:
        raise SigningKeyError(f"key {entry.get('kid')!r}: status must be one of {', '.join(STATUSES)}")
    private = serialization.load_pem_private_key(entry["private_key"].encode("ascii"), password=None)
    key: PrivateKey
    if (alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey)) or (
        alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    ):
        key = private
    else:
        raise SigningKeyError(f"key {entry['kid']!r}: the private key does not match alg {alg}")
    return SigningKey(kid=str(entry["kid"]), alg=alg, status=status, private_key=key, public_key=key.public_key())


def new_signing_key_document(kid: str, alg: str = "EdDSA") -> str:
    """A fresh signing-key JSON document with one active key (what ``mfa-gateway keygen`` writes)."""
    private: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return json.dumps({"keys": [{"kid": kid, "alg": alg, "status": "active", "private_key": pem}]}, indent=2)


def new_token_id() -> str:
    return uuid.uuid4().hex
