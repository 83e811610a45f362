"""MFA use cases: enroll, activate, verify a code, disable, reset, regenerate backup codes, status.

Functions over the core and the ports; every outcome emits one audit event (never with a code or secret in it).
A user is *enrolled* when they hold any second factor: an active TOTP enrollment, or a WebAuthn credential
(``service.webauthn`` registers and checks those). Whoever has one adds another only with a recent MFA
(``require_recent_mfa``), so a first factor alone never adds a factor to an enrolled account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mfa_gateway.core import backup_codes, methods, qr, totp
from mfa_gateway.core.errors import (
    AlreadyEnrolled,
    BadRequest,
    DependencyUnavailable,
    EnrollmentNotPending,
    FreshSecondFactorRequired,
    InvalidCode,
    NotEnrolled,
    SecondFactorRequired,
)
from mfa_gateway.core.keyring import Decrypted, KeyringError
from mfa_gateway.core.model import (
    AttemptLimits,
    AuditEvent,
    Enrollment,
    EnrollmentStatus,
    NewBackupCode,
    StepClaim,
    TotpParams,
)
from mfa_gateway.ports import AuditSink, CredentialStore, EnrollmentStore, PasswordHashing, SharedState, TotpCipher
from mfa_gateway.service.attempts import AttemptGuard, Report, login_key, user_key

log = logging.getLogger("mfa_gateway.mfa")

BACKUP_CLAIM_TTL = 60.0
"""A backup code is claimed in shared state before the database marks it used: racing replicas lose fast. The claim
is short, so a database failure between the two blocks that code for a minute, not longer."""
MAX_TOKEN_LENGTH = 64
ADD_FACTOR_WITHIN = 900.0
"""Seconds after the last MFA during which an enrolled user may add another second factor (a security key, an
authenticator app): a session stolen hours after its MFA cannot plant a factor of its own."""

Method = Literal["otp", "backup", "hwk"]


@dataclass(frozen=True, slots=True)
class MfaPolicy:
    issuer: str
    params: TotpParams
    window: int
    backup_code_count: int
    user_limits: AttemptLimits
    ip_limits: AttemptLimits


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the canonical user, the client address (for IP limits and the audit trail), and when the
    caller's session or token last passed MFA (None: a first factor only, or not known)."""

    user_id: str
    client_ip: str | None
    mfa_time: float | None = None


def require_recent_mfa(caller: Caller, now: float) -> None:
    """An enrolled user adds a second factor only from a session whose MFA is at most ``ADD_FACTOR_WITHIN`` old."""
    if caller.mfa_time is None:
        raise SecondFactorRequired()
    if now - caller.mfa_time > ADD_FACTOR_WITHIN:
        raise FreshSecondFactorRequired()


@dataclass(frozen=True, slots=True)
class Factors:
    """The second factors a user holds."""

    totp: bool
    webauthn: int

    @property
    def enrolled(self) -> bool:
        return self.totp or self.webauthn > 0


@dataclass(frozen=True, slots=True)
class EnrollmentStart:
    secret: str
    otpauth_url: str
    qr_png: str
    qr_svg: str
    backup_codes: list[str]
    params: TotpParams


@dataclass(frozen=True, slots=True)
class Verified:
    method: Method
    backup_codes_left: int | None = None


@dataclass(frozen=True, slots=True)
class MfaStatus:
    """``enrolled``: any second factor, or a TOTP enrollment still pending; ``active``: a second factor that works
    now. ``totp``: an active authenticator app; ``webauthn``: security keys and passkeys registered."""

    enrolled: bool
    active: bool
    backup_codes_left: int
    params: TotpParams | None
    totp: bool = False
    webauthn: int = 0


class MfaService:
    def __init__(
        self,
        *,
        store: EnrollmentStore,
        credentials: CredentialStore,
        state: SharedState,
        hashing: PasswordHashing,
        audit: AuditSink,
        cipher: TotpCipher,
        clock: Callable[[], float],
        policy: MfaPolicy,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._state = state
        self._hashing = hashing
        self._audit = audit
        self._cipher = cipher
        self._clock = clock
        self.policy = policy
        self._attempts = AttemptGuard(state, clock, policy.ip_limits)

    async def start_enrollment(self, caller: Caller, *, by_administrator: bool = False) -> EnrollmentStart:
        """A new pending enrollment (replacing a pending one); an active enrollment is never replaced. A user who
        holds a security key adds an authenticator app only with a recent MFA (an administrator needs none)."""
        existing = await self._store.get_enrollment(caller.user_id)
        if existing is not None and existing.active:
            await self._emit("mfa.enroll.start", caller, "refused", reason="already_enrolled")
            raise AlreadyEnrolled()
        if not by_administrator and await self._credentials.count_credentials(caller.user_id):
            try:
                require_recent_mfa(caller, self._clock())
            except (SecondFactorRequired, FreshSecondFactorRequired):
                await self._emit("mfa.enroll.start", caller, "refused", reason="mfa_required")
                raise
        secret = totp.generate_secret()
        codes = backup_codes.generate(self.policy.backup_code_count)
        hashed = await self._hash_codes(caller.user_id, codes)
        ciphertext = await self._cipher.encrypt(secret.encode(), context=caller.user_id)
        enrollment = Enrollment(
            user_id=caller.user_id,
            secret_ciphertext=ciphertext,
            key_id=self._cipher.key_id_of(ciphertext),
            params=self.policy.params,
            status=EnrollmentStatus.PENDING,
            created_at=self._clock(),
        )
        await self._store.save_pending(enrollment, hashed)
        uri = totp.provisioning_uri(secret, self.policy.params, account=caller.user_id, issuer=self.policy.issuer)
        png, svg = await asyncio.gather(asyncio.to_thread(qr.png_data_url, uri), asyncio.to_thread(qr.svg, uri))
        await self._emit("mfa.enroll.start", caller, "success")
        return EnrollmentStart(
            secret=secret, otpauth_url=uri, qr_png=png, qr_svg=svg, backup_codes=codes, params=enrollment.params
        )

    async def activate(self, caller: Caller, token: str) -> None:
        """Confirm a pending enrollment with a current TOTP code (backup codes cannot activate)."""
        enrollment = await self._store.get_enrollment(caller.user_id)
        if enrollment is None or enrollment.active:
            raise EnrollmentNotPending()
        await self._check(caller, enrollment, token, allow_backup=False, event="mfa.enroll.verify")
        if not await self._store.activate(caller.user_id, self._clock()):
            raise EnrollmentNotPending()
        await self._emit("mfa.enroll.activate", caller, "success")

    async def verify(self, caller: Caller, token: str, *, event: str = "mfa.verify") -> Verified:
        """Verify a TOTP or backup code of an active enrollment."""
        enrollment = await self._active(caller)
        return await self._check(caller, enrollment, token, allow_backup=True, event=event)

    async def disable(self, caller: Caller, token: str) -> None:
        enrollment = await self._active(caller)
        await self._check(caller, enrollment, token, allow_backup=True, event="mfa.disable.verify")
        await self._store.delete_enrollment(caller.user_id)
        await self._emit("mfa.disable", caller, "success")

    async def reset(self, user_id: str, *, via: str) -> bool:
        """An administrator's reset (a lost phone or key): the enrollment (key and backup codes) and every WebAuthn
        credential deleted and the user's lockouts lifted, audited as ``mfa.reset``. True if there was a second
        factor. Revoking the user's sessions is the caller's part (``account.reset_everywhere``), as with
        ``disable``."""
        deleted = await self._store.delete_enrollment(user_id)
        keys = await self._credentials.delete_credentials(user_id)
        await self._state.clear_failures([user_key(user_id), login_key(user_id)])
        enrollment = "deleted" if deleted else "none"
        detail = {"enrollment": enrollment, **({"webauthn": str(keys)} if keys else {}), "via": via}
        await self._emit("mfa.reset", Caller(user_id, None), "success", **detail)
        return deleted or keys > 0

    async def regenerate_backup_codes(self, caller: Caller, token: str) -> list[str]:
        enrollment = await self._active(caller)
        await self._check(caller, enrollment, token, allow_backup=True, event="mfa.backup_codes.verify")
        codes = backup_codes.generate(self.policy.backup_code_count)
        await self._store.replace_backup_codes(caller.user_id, await self._hash_codes(caller.user_id, codes))
        await self._emit("mfa.backup_codes.regenerate", caller, "success")
        return codes

    async def status(self, user_id: str) -> MfaStatus:
        enrollment = await self._store.get_enrollment(user_id)
        keys = await self._credentials.count_credentials(user_id)
        totp_active = enrollment is not None and enrollment.active
        left = await self._store.count_unused_backup_codes(user_id) if enrollment is not None else 0
        return MfaStatus(
            enrolled=enrollment is not None or keys > 0,
            active=totp_active or keys > 0,
            backup_codes_left=left,
            params=enrollment.params if enrollment is not None else None,
            totp=totp_active,
            webauthn=keys,
        )

    async def has_pending(self, user_id: str) -> bool:
        enrollment = await self._store.get_enrollment(user_id)
        return enrollment is not None and not enrollment.active

    async def factors(self, user_id: str) -> Factors:
        enrollment = await self._store.get_enrollment(user_id)
        return Factors(
            totp=enrollment is not None and enrollment.active,
            webauthn=await self._credentials.count_credentials(user_id),
        )

    async def is_enrolled(self, user_id: str) -> bool:
        """Whether the user holds any second factor: an active TOTP enrollment or a WebAuthn credential. This is
        what decides between asking for MFA and offering enrollment, so a user whose only factor is a security key
        is asked for it, never offered a first-factor-only enrollment."""
        return (await self.factors(user_id)).enrolled

    async def _active(self, caller: Caller) -> Enrollment:
        enrollment = await self._store.get_enrollment(caller.user_id)
        if enrollment is None or not enrollment.active:
            if await self._credentials.count_credentials(caller.user_id):
                raise NotEnrolled(
                    "No authenticator app is set up for this user; use a security key or passkey.",
                    code="totp_not_enrolled",
                )
            raise NotEnrolled()
        return enrollment

    async def _check(
        self, caller: Caller, enrollment: Enrollment, token: str, *, allow_backup: bool, event: str
    ) -> Verified:
        """The one place a code is checked: lockout first, then the code, then replay, then counters."""
        token = _clean(token)
        is_totp = totp.looks_like_totp(token, enrollment.params)
        normalised = None if is_totp or not allow_backup else backup_codes.normalise(token)
        if not is_totp and normalised is None:
            expected = f"{enrollment.params.digits} digits" + (" or a backup code" if allow_backup else "")
            raise BadRequest(f"The code must be {expected}.", code="invalid_code_format")
        now = self._clock()
        method: Method = methods.OTP if is_totp else methods.BACKUP

        async def report(result: str, verified: Verified | None) -> None:
            detail = {"method": verified.method if verified else method} if result in ("failure", "success") else {}
            await self._emit(event, caller, result, **detail)

        if is_totp:
            found = await self._judge_totp(caller, enrollment, token, now, report)
        else:
            assert normalised is not None

            async def check() -> Verified | None:
                return await self._check_backup(caller, normalised, now)

            found = await self._attempts.judge(
                user_key(caller.user_id), self.policy.user_limits, caller.client_ip, check, report
            )
        if found is None:
            raise InvalidCode()
        return found

    async def _judge_totp(
        self, caller: Caller, enrollment: Enrollment, token: str, now: float, report: Report[Verified]
    ) -> Verified | None:
        """The code judged here (the secret decrypted, the step it matches found), then lockout, replay and
        counters in one step of shared state (``AttemptGuard.judge_totp``), then the durable replay mark.

        Two replay marks, both needed: the shared one answers a replay, or replicas racing for one step, without a
        database write; the durable one, a conditional UPDATE with the enrollment, still refuses the step after a
        Redis that kept no data restarted. Success is reported only once both are written; a store failure raises
        (503). A secret that cannot be decrypted (a dependency down) leaves the code unjudged: the attempt goes
        through ``AttemptGuard.judge`` (admitted, then given back uncounted), so a locked user still hears of the lock
        first. A secret that Vault decrypts is opened only once a lock check has passed (a second round trip)."""
        subject, limits = user_key(caller.user_id), self.policy.user_limits
        if not self._cipher.opens_locally(enrollment.secret_ciphertext):
            # Vault would decrypt: a flood against a locked user or address must not become Vault's load.
            await self._attempts.refuse_if_locked(subject, caller.client_ip, report)
        try:
            opened = await self._open_secret(caller, enrollment)
        except Exception as exc:  # noqa: BLE001 - not judged: a lock still answers first, then the error
            unopened = exc

            async def unjudged() -> Verified | None:
                raise unopened

            return await self._attempts.judge(subject, limits, caller.client_ip, unjudged, report)
        try:
            step = totp.verify(opened.plaintext.decode(), token, enrollment.params, now, self.policy.window)
        except InvalidCode:
            claim = None
        else:
            claim = StepClaim(caller.user_id, step, (2 * self.policy.window + 2) * enrollment.params.period)

        async def confirm() -> Verified | None:
            assert claim is not None
            if not await self._store.claim_totp_step(caller.user_id, claim.step):
                return None
            primary = self._primary()
            if primary is not None and opened.kid != primary:
                await self._rekey(enrollment)
            return Verified(method=methods.OTP)

        return await self._attempts.judge_totp(subject, limits, caller.client_ip, claim, confirm, report)

    async def _open_secret(self, caller: Caller, enrollment: Enrollment) -> Decrypted:
        try:
            return await self._cipher.decrypt(enrollment.secret_ciphertext, context=caller.user_id)
        except KeyringError as exc:
            raise DependencyUnavailable("keyring", "The key for this enrollment is not available.") from exc

    async def _check_backup(self, caller: Caller, normalised: str, now: float) -> Verified | None:
        bucket = backup_codes.lookup(caller.user_id, normalised)
        for candidate in await self._store.unused_backup_codes(caller.user_id, bucket):
            if not await self._hashing.matches(candidate.hash, normalised):
                continue
            claimed = await self._state.claim_once(f"backup:{candidate.id}", now, BACKUP_CLAIM_TTL)
            if claimed and await self._store.consume_backup_code(candidate.id, now):
                left = await self._store.count_unused_backup_codes(caller.user_id)
                return Verified(method=methods.BACKUP, backup_codes_left=left)
            return None
        return None

    def _primary(self) -> str | None:
        """The cipher's primary key id; None while it is unknown (Transit unreachable at start): no lazy rekey."""
        try:
            return self._cipher.primary
        except DependencyUnavailable:
            return None

    async def _rekey(self, enrollment: Enrollment) -> None:
        """Lazy re-encryption under the primary key after a successful use (compare-and-set, so races are safe).

        Best effort: the code was already accepted and its time step claimed, so a failure here (Vault or the
        database unreachable, a rewrap refused) must not turn a correct code into a 503 or, on retry, a replay.
        ``mfa-gateway rekey`` moves the row later."""
        try:
            ciphertext = await self._cipher.reencrypt(enrollment.secret_ciphertext, context=enrollment.user_id)
            await self._store.update_secret(
                enrollment.user_id, enrollment.secret_ciphertext, ciphertext, self._cipher.key_id_of(ciphertext)
            )
        except (DependencyUnavailable, KeyringError) as exc:
            log.warning("lazy re-encryption skipped (%s); mfa-gateway rekey will move this row", type(exc).__name__)

    async def _hash_codes(self, user_id: str, codes: list[str]) -> list[NewBackupCode]:
        normalised = [backup_codes.normalise(code) or "" for code in codes]
        hashes = await asyncio.gather(*(self._hashing.hash(code) for code in normalised))
        return [
            NewBackupCode(lookup=backup_codes.lookup(user_id, code), hash=hashed)
            for code, hashed in zip(normalised, hashes, strict=True)
        ]

    async def _emit(self, event: str, caller: Caller, result: str, **detail: str) -> None:
        await self._audit.emit(
            AuditEvent(
                at=self._clock(),
                event=event,
                result=result,
                user_id=caller.user_id,
                client_ip=caller.client_ip,
                detail=detail,
            )
        )


def _clean(token: str) -> str:
    if len(token) > MAX_TOKEN_LENGTH:
        raise BadRequest("The code is too long.", code="invalid_code_format")
    return token.strip().replace(" ", "")
