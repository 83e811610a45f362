"""WebAuthn's binary fields as they travel as JSON: strict base64url, and the credential id an answer names.

Pure, and apart from the ceremonies (``core.webauthn``): the web layer reads and writes ids with these on every
WebAuthn request without loading py_webauthn until a ceremony runs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from mfa_gateway.core.errors import InvalidWebAuthnResponse

MAX_CREDENTIAL_ID = 1023
"""The longest credential id WebAuthn allows, in bytes."""

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_b64url(text: object, *, limit: int = 1 << 16) -> bytes:
    """Strict base64url (no padding, no other characters, at most ``limit`` characters); ``ValueError`` if not."""
    if not isinstance(text, str) or len(text) > limit or not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def credential_id_of(response: Mapping[str, Any]) -> bytes:
    """The credential id an answer names (its ``rawId``, which must equal its ``id``)."""
    try:
        raw = from_b64url(response.get("rawId"), limit=2 * MAX_CREDENTIAL_ID)
    except ValueError:
        raise InvalidWebAuthnResponse("malformed") from None
    if not raw or len(raw) > MAX_CREDENTIAL_ID or response.get("id") != b64url(raw):
        raise InvalidWebAuthnResponse("malformed")
    return raw
