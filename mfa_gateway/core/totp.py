"""TOTP (RFC 6238) on pyotp, with time passed in and the matched time step returned.

There is deliberately no boolean ``verify``: the caller gets the step and must claim it in shared state, so a
code cannot be replayed. ``verify`` raises ``InvalidCode`` rather than returning ``False``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import quote

import pyotp
import pyotp.utils

from mfa_gateway.core.errors import BadRequest, InvalidCode
from mfa_gateway.core.model import TotpAlgorithm, TotpParams

SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation
_DIGESTS = {
    TotpAlgorithm.SHA1: hashlib.sha1,
    TotpAlgorithm.SHA256: hashlib.sha256,
    TotpAlgorithm.SHA512: hashlib.sha512,
}
_ASCII_DIGITS = re.compile(r"[0-9]{6,8}")


def generate_secret() -> str:
    """A new random 160-bit secret, base32 without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _otp(secret: str, params: TotpParams) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=params.digits, digest=_DIGESTS[params.algorithm], interval=params.period)


def time_step(now: float, params: TotpParams) -> int:
    return int(now // params.period)


def code_at(secret: str, params: TotpParams, step: int) -> str:
    """The code for a time step (used by tests and by the demo, never to answer a client)."""
    return str(_otp(secret, params).generate_otp(step))


def looks_like_totp(token: str, params: TotpParams) -> bool:
    return len(token) == params.digits and _ASCII_DIGITS.fullmatch(token) is not None


def verify(secret: str, token: str, params: TotpParams, now: float, window: int = 1) -> int:
    """Return the time step whose code equals ``token`` within ``±window`` steps of ``now``.

    Every candidate is compared (constant time, no early exit) so timing does not tell which step matched.
    Raises ``BadRequest`` for a token that cannot be a code and ``InvalidCode`` for a wrong one.
    """
    if not looks_like_totp(token, params):
        raise BadRequest(f"The code must be {params.digits} digits.", code="invalid_code_format")
    otp = _otp(secret, params)
    current = time_step(now, params)
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if pyotp.utils.strings_equal(str(otp.generate_otp(step)), token) and matched is None:
            matched = step
    if matched is None:
        raise InvalidCode()
    return matched


def label_account(account: str) -> str:
    """The account as an authenticator label may hold it. The Key Uri Format forbids ``:`` in either part of the
    ``issuer:account`` label (apps split on it), and user names from a header or a token may have one; the label is
    only what the app displays, so ``:`` becomes the look-alike U+FF1A (fullwidth colon) rather than refusing the
    user an enrollment."""
    return account.replace(":", "\uff1a")


def provisioning_uri(secret: str, params: TotpParams, *, account: str, issuer: str) -> str:
    """``otpauth://totp/issuer:account?secret=…&issuer=…`` per the Key Uri Format; non-default parameters only.

    pyotp builds the query (``urlencode``, spaces as ``%20``) but quotes the label with ``/`` left as is, which
    apps read as a path; the label is therefore re-quoted here with nothing kept but the one separating ``:``.
    ``issuer`` must hold no ``:`` (the configuration refuses one); ``account`` goes through :func:`label_account`.
    """
    if ":" in issuer:
        raise ValueError("the issuer must not contain ':'")
    account = label_account(account)
    built = str(_otp(secret, params).provisioning_uri(name=account, issuer_name=issuer))
    query = built.split("?", 1)[1]  # pyotp's label is quoted: its only '?' starts the query
    return f"otpauth://totp/{quote(issuer, safe='')}:{quote(account, safe='')}?{query}"
