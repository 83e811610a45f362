"""A software authenticator for server-side tests: real keys and real signatures, no browser.

``SoftAuthenticator`` answers registration and authentication options as a browser and a security key together
would (WebAuthn Level 2): it makes an ES256 key pair, writes ``clientDataJSON`` with the origin it is told it runs
on, builds ``authenticatorData`` (relying party id hash, flags, signature counter, attested credential data with a
COSE key) and signs ``authenticatorData || SHA-256(clientDataJSON)``. Attestation is ``none``. The gateway's
py_webauthn verification runs on these answers unchanged: nothing of py_webauthn is mocked.

Each knob a test needs to break one rule: the origin and relying party id it claims, the user-presence and
user-verification flags, the backup flags, the counter (a fixed value, or a step of 0 for an authenticator that
keeps no counter), another user handle, or a signature made by another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_BS, FLAG_AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One credential on one software authenticator, for the origin and relying party id given."""

    origin: str
    rp_id: str
    user_verifying: bool = True
    counter: int = 0
    counter_step: int = 1
    backup_eligible: bool = False
    backed_up: bool = False
    aaguid: bytes = bytes(16)
    transports: tuple[str, ...] = ("usb",)
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    user_handle: bytes | None = None

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, *, present: bool, verified: bool, attested: bool) -> int:
        flags = (FLAG_UP if present else 0) | (FLAG_UV if verified else 0) | (FLAG_AT if attested else 0)
        return flags | (FLAG_BE if self.backup_eligible else 0) | (FLAG_BS if self.backed_up else 0)

    def _client_data(self, kind: str, options: dict[str, Any], origin: str | None, challenge: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge or options["challenge"], "origin": origin or self.origin}
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        verified: bool | None = None,
        present: bool = True,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """The answer of ``navigator.credentials.create(options)``, as a browser sends it in JSON."""
        self.user_handle = unb64url(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options, origin, challenge)
        flags = self._flags(
            present=present, verified=self.user_verifying if verified is None else verified, attested=True
        )
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.counter)
            + self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self.cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": list(self.transports),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        verified: bool | None = None,
        present: bool = True,
        counter: int | None = None,
        challenge: str | None = None,
        user_handle: bytes | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> dict[str, Any]:
        """The answer of ``navigator.credentials.get(options)``: the counter moves by ``counter_step`` unless a
        ``counter`` is given; ``signing_key`` signs instead of the credential's own key (a forgery)."""
        if counter is None:
            self.counter += self.counter_step
            counter = self.counter
        client_data = self._client_data("webauthn.get", options, origin, challenge)
        flags = self._flags(
            present=present, verified=self.user_verifying if verified is None else verified, attested=False
        )
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([flags]) + struct.pack(">I", counter)
        )
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = (signing_key or self.key).sign(signed, ec.ECDSA(hashes.SHA256()))
        handle = user_handle if user_handle is not None else self.user_handle
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                **({"userHandle": b64url(handle)} if handle is not None else {}),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
