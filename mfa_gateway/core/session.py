"""Sealed session cookies: AES-GCM from the keyring (key id inside), opened locally with no network call.

A session records who signed in (``user_id``), when the first factor was given (``auth_time``), when MFA last
succeeded (``mfa_time``, None for a first-factor-only session), how (``methods``, RFC 8176 ``amr`` values), when a
phishing-resistant method last succeeded (``phishing_resistant_time``: a later step-up by another method moves
``mfa_time`` but not this, so a rule demanding a fresh phishing-resistant factor can tell), a random ``sid`` that
changes at every change of authentication level, the absolute expiry, and a ``binding``: a hash of the first-factor
session it belongs to, so a cookie cannot be replayed beside another user's first factor. A remembered device that
stood in for the second factor is recorded apart (``device``), never as ``mfa_time`` nor as phishing-resistant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass, replace

from mfa_gateway.core.devices import DeviceMfa
from mfa_gateway.core.errors import Unauthenticated
from mfa_gateway.core.keyring import Keyring, KeyringError
from mfa_gateway.core.methods import DEVICE, PHISHING_RESISTANT

PURPOSE = "session"


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    sid: str
    auth_time: float
    methods: tuple[str, ...]
    issued_at: float
    expires_at: float
    binding: str = ""
    mfa_time: float | None = None
    last_seen: float = 0.0
    email: str | None = None
    groups: tuple[str, ...] = ()
    device: DeviceMfa | None = None
    phishing_resistant_time: float | None = None

    def stepped_up(self, method: str, now: float) -> Session:
        """The session after a successful MFA verification: a new id, the method added, MFA time now (and the
        phishing-resistant time, if ``method`` is one)."""
        methods = self.methods if method in self.methods else (*self.methods, method)
        resistant = now if method in PHISHING_RESISTANT else self.phishing_resistant_time
        return replace(
            self,
            sid=new_session_id(),
            methods=methods,
            mfa_time=now,
            phishing_resistant_time=resistant,
            issued_at=now,
            last_seen=now,
        )

    def remembered(self, device: DeviceMfa) -> Session:
        """The session after a remembered device stood in for the second factor: a new id, ``device`` added to the
        methods and recorded, MFA time unchanged."""
        methods = self.methods if DEVICE in self.methods else (*self.methods, DEVICE)
        now = device.at
        return replace(self, sid=new_session_id(), methods=methods, device=device, issued_at=now, last_seen=now)

    @classmethod
    def start(
        cls,
        user_id: str,
        methods: tuple[str, ...],
        *,
        now: float,
        ttl: float,
        auth_time: float,
        binding: str = "",
        mfa_time: float | None = None,
        phishing_resistant_time: float | None = None,
        email: str | None = None,
        groups: tuple[str, ...] = (),
        device: DeviceMfa | None = None,
    ) -> Session:
        """A new session (new id) issued and last seen ``now``, for ``ttl`` seconds: the one way sessions begin."""
        return cls(
            user_id=user_id,
            sid=new_session_id(),
            auth_time=auth_time,
            methods=methods,
            issued_at=now,
            expires_at=now + ttl,
            binding=binding,
            mfa_time=mfa_time,
            last_seen=now,
            email=email,
            groups=groups,
            device=device,
            phishing_resistant_time=phishing_resistant_time,
        )

    def seen(self, now: float) -> Session:
        return replace(self, last_seen=now)

    def is_idle(self, now: float, idle_timeout: float) -> bool:
        return now - max(self.last_seen, self.issued_at) > idle_timeout


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def binding_of(first_factor_value: str) -> str:
    """The binding stored in a session: a hash, so the cookie never carries the first-factor credential itself."""
    return hashlib.sha256(first_factor_value.encode()).hexdigest()[:32]


def seal(session: Session, keyring: Keyring) -> str:
    payload = {
        "u": session.user_id,
        "s": session.sid,
        "a": session.auth_time,
        "m": list(session.methods),
        "i": session.issued_at,
        "e": session.expires_at,
        "b": session.binding,
        "f": session.mfa_time,
        "l": session.last_seen,
        **({"E": session.email} if session.email else {}),
        **({"G": list(session.groups)} if session.groups else {}),
        **({"d": [session.device.at, session.device.trusted_at, session.device.expires_at]} if session.device else {}),
        **({"R": session.phishing_resistant_time} if session.phishing_resistant_time is not None else {}),
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    sealed = keyring.encrypt(raw, purpose=PURPOSE, context="")
    return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def open_sealed(value: str, keyring: Keyring, now: float) -> Session:
    """The session in a cookie value, or ``Unauthenticated(invalid_session)`` if forged, stale or expired."""
    invalid = Unauthenticated("The session is not valid; sign in again.", code="invalid_session")
    if len(value) > 4096:
        raise invalid
    try:
        sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = json.loads(keyring.decrypt(sealed, purpose=PURPOSE, context="").plaintext)
        session = Session(
            user_id=str(payload["u"]),
            sid=str(payload["s"]),
            auth_time=float(payload["a"]),
            methods=tuple(str(m) for m in payload["m"]),
            issued_at=float(payload["i"]),
            expires_at=float(payload["e"]),
            binding=str(payload["b"]),
            mfa_time=None if payload["f"] is None else float(payload["f"]),
            last_seen=float(payload.get("l", 0.0)),
            email=str(payload["E"]) if payload.get("E") else None,
            groups=tuple(str(g) for g in payload.get("G", ())),
            device=_device(payload.get("d")),
            phishing_resistant_time=None if payload.get("R") is None else float(payload["R"]),
        )
    except (KeyringError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise invalid from exc
    if now >= session.expires_at:
        raise invalid
    return session


def _device(value: object) -> DeviceMfa | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError("device")
    at, trusted_at, expires_at = (float(item) for item in value)
    return DeviceMfa(at, trusted_at, expires_at)
