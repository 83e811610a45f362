"""Value objects shared by the core, the service layer and the ports."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class TotpAlgorithm(enum.StrEnum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


TOTP_DIGITS = range(6, 9)
"""Code lengths: RFC 4226 needs at least 6; authenticator apps show at most 8."""
TOTP_PERIODS = range(15, 121)
"""Seconds per code: pyotp, which makes and checks codes, refuses an interval over 120 s (``ValueError``)."""


@dataclass(frozen=True, slots=True)
class TotpParams:
    """RFC 6238 parameters of one enrollment; stored with it so a later config change never locks anyone out."""

    algorithm: TotpAlgorithm = TotpAlgorithm.SHA1
    digits: int = 6
    period: int = 30

    def __post_init__(self) -> None:
        if self.digits not in TOTP_DIGITS:
            raise ValueError(f"digits must be {TOTP_DIGITS.start}-{TOTP_DIGITS.stop - 1}")
        if self.period not in TOTP_PERIODS:
            raise ValueError(f"period must be {TOTP_PERIODS.start}-{TOTP_PERIODS.stop - 1} seconds")


class EnrollmentStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One user's TOTP enrollment. ``secret_ciphertext`` is keyring output: the plaintext secret is never stored."""

    user_id: str
    secret_ciphertext: bytes
    key_id: str
    params: TotpParams
    status: EnrollmentStatus
    created_at: float
    activated_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status is EnrollmentStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class NewBackupCode:
    """What the store keeps of a backup code: a public lookup bucket and a salted Argon2id hash."""

    lookup: str
    hash: str


@dataclass(frozen=True, slots=True)
class StoredBackupCode:
    id: int
    lookup: str
    hash: str


ATTEMPTS_BUSY = -1.0
"""``admit_attempt``'s answer when the attempts already being judged on a key could reach its limit: wait a moment
(``AttemptsBusy``); no lock is made."""

IN_FLIGHT_STALE = 30.0
"""Seconds after the first of a key's attempts in flight (since it last had none) that their count is taken as
stale (a replica died while judging) and starts again from zero."""


@dataclass(frozen=True, slots=True)
class StepClaim:
    """A TOTP code found correct: the user whose replay mark it moves, its time step, how long the mark is kept."""

    user_id: str
    step: int
    ttl: float


@dataclass(frozen=True, slots=True)
class CodeJudgement:
    """``SharedState.judge_totp_attempt``'s answer. ``refused``: 0.0 when the attempt was judged, else what
    ``admit_attempt`` answers (a lock's remaining seconds, ``math.inf`` for a hard lock, ``ATTEMPTS_BUSY``);
    ``accepted``: judged, and its step claimed (the keys to forget were cleared)."""

    refused: float = 0.0
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class AttemptLimits:
    """Failure limits for one kind of key (user or client IP).

    ``max_failures`` failures within ``window`` seconds lock the key for ``lockout`` seconds, doubling with each
    further lockout up to ``max_lockout``. ``hard_lock_after`` consecutive failures (never reset by time, only by a
    success or an administrator) lock the key until reset; 0 turns that off.
    """

    max_failures: int = 5
    window: float = 300.0
    lockout: float = 60.0
    max_lockout: float = 3600.0
    hard_lock_after: int = 100


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record. ``detail`` holds non-secret context only (method, reason); never a code or secret."""

    at: float
    event: str
    result: str
    user_id: str | None = None
    client_ip: str | None = None
    detail: Mapping[str, str] = field(default_factory=dict)


class RevocationKind(enum.StrEnum):
    SESSION = "session"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Revocation:
    """Sessions refused from now on: one session by id, or every session of a user issued at or before ``at``.

    ``until`` is when the entry may be forgotten: the longest any session it covers could still live.
    """

    kind: RevocationKind
    subject: str
    at: float
    until: float


@dataclass(frozen=True, slots=True)
class WebAuthnCredential:
    """A registered security key or passkey. Nothing here is secret: ``public_key`` is the COSE public key the
    authenticator made, ``credential_id`` its handle for the private key it keeps.

    ``user_handle`` is the WebAuthn user id the authenticator stores with a discoverable credential: random, the same
    for every credential of one user, never the user name. ``sign_count`` only moves forward (0 for the many
    authenticators that keep no counter). ``backup_eligible`` / ``backup_state``: a passkey that may be, or is,
    synced to other devices. ``aaguid`` names the authenticator model (all zeros when it does not say)."""

    credential_id: bytes
    user_id: str
    user_handle: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    aaguid: str
    name: str
    created_at: float
    last_used_at: float | None = None
