"""Second-factor methods as sessions and JWTs record them: RFC 8176 ``amr`` values, and which resist phishing.

``otp`` (RFC 8176) is a TOTP code; ``backup`` is the gateway's own value for a one-time backup code (RFC 8176 has
none). A WebAuthn assertion is recorded as ``hwk``, "proof of possession of a hardware-secured key": the signature
comes from a key the authenticator holds and never hands out (a security key's chip, a platform's secure element
or TPM, or a synced passkey the platform keeps), over data that includes the origin the browser saw. RFC 8176's
``swk`` (a software-secured key) would fit a synced passkey better in theory, but the gateway cannot tell the two
apart without trusting attestation, which it does not require; ``hwk`` names the method, not a verified property
of the device. See docs/security/webauthn.md.

*Phishing-resistant* methods are those a look-alike site cannot relay: the browser binds a WebAuthn signature to
the origin and the relying party id, so a code typed into a fake page is useless for it. TOTP and backup codes are
not phishing-resistant: a user can be talked into typing them anywhere. Rules that demand a phishing-resistant
method read ``PHISHING_RESISTANT``; "remember this device" never counts as one.

A passkey signing a user in alone (no password) stands for both factors: the key is the possession factor
(``hwk``) and the device's user verification, a PIN or a biometric unlocking the key, the other; RFC 8176's ``pin``
("a PIN or pattern that a user enters to unlock a key on the device") names it (``PASSKEY_FIRST_FACTOR``), since
the gateway cannot tell a PIN from a fingerprint. Such a session's methods are ``pin`` and ``hwk``: it has MFA and a
phishing-resistant method, and an audit tells it from a password and a key (``pwd`` and ``hwk``).

``device`` is the gateway's own value for a remembered device standing in for the second factor (see
``core.devices``): it is in neither set, so nothing that asks "was there MFA?" by ``amr`` values counts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

OTP: Final = "otp"
BACKUP: Final = "backup"
WEBAUTHN: Final = "hwk"
DEVICE: Final = "device"
PASSKEY_FIRST_FACTOR: Final = "pin"

MFA_METHODS = frozenset({OTP, BACKUP, WEBAUTHN})
"""``amr`` values that mean a second factor was given (a session or JWT carrying one has MFA)."""

PHISHING_RESISTANT = frozenset({WEBAUTHN})
"""``amr`` values of second factors bound to the origin by the browser."""


def has_mfa(methods: Iterable[str]) -> bool:
    return not MFA_METHODS.isdisjoint(methods)


def phishing_resistant(methods: Iterable[str]) -> bool:
    """Whether a session's methods include a phishing-resistant second factor."""
    return not PHISHING_RESISTANT.isdisjoint(methods)
