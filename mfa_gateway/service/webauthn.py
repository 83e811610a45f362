"""WebAuthn use cases: register a security key or passkey, sign in with one, list, rename and remove them.

Every ceremony has two halves. *Options* make a random challenge and keep it in shared state as a ceremony, bound to
its purpose (registration or authentication), the user and the first factor that asked (a session, a header, an
app session or a pending sign-in: ``binding``), for ``webauthn.challenge_ttl``. *Verification* takes the ceremony
first, atomically and once on any replica, and refuses it unless purpose, user and binding all match: a replayed
answer, an answer for another user, or one relayed into another session finds nothing (``CeremonyExpired``).

Authentication is judged like a TOTP code (``AttemptGuard`` on the user's and the address's keys, so failures of
either method count together and lockouts apply to both). A correctly signed answer whose signature counter did not
move forward is refused and audited as ``mfa.webauthn.counter_regressed``; the store's compare-and-set makes the
same true of two answers racing with one counter.

A passkey signs a user in with no password (``start_passkey``, ``verify_passkey``): the ceremony names no user
(purpose ``passkey``), the answer's ``userHandle`` and credential id find the user, and user verification is
required whatever the setting. Audited as ``login.passkey`` (``method: passkey``, a ``reason`` on failure).

Audit events: ``mfa.verify`` / ``login.mfa`` (and ``mfa.webauthn.remove.verify``) with ``method: webauthn`` and,
on failure, a ``reason``; ``mfa.webauthn.register``, ``mfa.webauthn.rename``, ``mfa.webauthn.remove``,
``mfa.webauthn.counter_regressed``. Never a challenge, signature or key.
"""

from __future__ import annotations

import hmac
import json
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from mfa_gateway.core import methods
from mfa_gateway.core import webauthn as ceremonies
from mfa_gateway.core.errors import (
    BadRequest,
    CeremonyExpired,
    CredentialExists,
    CredentialNotFound,
    EnrollmentDisabled,
    InvalidWebAuthnResponse,
    NotEnrolled,
    SignCounterRegressed,
    TooManyCredentials,
)
from mfa_gateway.core.model import AttemptLimits, AuditEvent, WebAuthnCredential
from mfa_gateway.core.relying_party import RelyingParty
from mfa_gateway.ports import AuditSink, CredentialStore, SharedState
from mfa_gateway.service.attempts import AttemptGuard, Report, ip_key, user_key
from mfa_gateway.service.mfa import Caller, MfaService, Verified, require_recent_mfa

METHOD = "webauthn"
"""The method's name in audit details and metric labels (its ``amr`` value is ``methods.WEBAUTHN``, ``hwk``)."""
MAX_NAME = 64
MAX_CEREMONY_ID = 64
USER_HANDLE_BYTES = 32

PASSKEY_METHOD = "passkey"
"""The method's name in ``login.passkey`` audit details and metric labels (a passkey standing for both factors)."""

Purpose = Literal["register", "authenticate", "passkey"]
_PURPOSES: dict[str, Purpose] = {"register": "register", "authenticate": "authenticate", "passkey": "passkey"}


@dataclass(frozen=True, slots=True)
class Ceremony:
    """A challenge as shared state keeps it: for what, for whom, for which first factor (and, to register, the
    name chosen and the user handle to store)."""

    purpose: Purpose
    user_id: str
    binding: str
    challenge: bytes
    name: str = ""
    user_handle: bytes = b""

    def to_json(self) -> bytes:
        record = {
            "p": self.purpose,
            "u": self.user_id,
            "b": self.binding,
            "c": ceremonies.b64url(self.challenge),
            "n": self.name,
            "h": ceremonies.b64url(self.user_handle),
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Ceremony:
        record = json.loads(raw)
        purpose = _PURPOSES[record["p"]]
        return cls(
            purpose=purpose,
            user_id=str(record["u"]),
            binding=str(record["b"]),
            challenge=ceremonies.from_b64url(record["c"]),
            name=str(record["n"]),
            user_handle=ceremonies.from_b64url(record["h"]),
        )


@dataclass(frozen=True, slots=True)
class Started:
    """Options for the browser (``publicKey`` of ``navigator.credentials.create`` or ``get``), and the id to send
    back with the answer."""

    ceremony_id: str
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PasskeyUser:
    """Whom a verified passkey assertion signed in: the user its handle and credential belong to."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Registered:
    credential: WebAuthnCredential
    enrolled: bool
    """True when this credential is the user's first second factor (the registration was an enrollment)."""


@dataclass(frozen=True, slots=True)
class Removed:
    credential: WebAuthnCredential
    factors_left: bool
    """Whether the user still holds a second factor (none left: MFA is off for them, as after ``disable``)."""


def credential_name(raw: object) -> str:
    """A name for a credential: text of 1-64 characters after trimming, no control or format characters."""
    if not isinstance(raw, str):
        raise BadRequest("'name' must be a string of 1-64 characters.", code="invalid_field")
    name = unicodedata.normalize("NFC", raw).strip()
    if not 1 <= len(name) <= MAX_NAME or any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadRequest("'name' must be 1-64 characters, without control characters.", code="invalid_field")
    return name


async def _refused() -> Verified | None:
    """The check of an answer naming no stored credential: always a wrong guess."""
    return None


def _belongs(ceremony: Ceremony, purpose: Purpose, user_id: str, binding: str) -> bool:
    """Whether a ceremony is this caller's: same purpose, user and first factor (compared in constant time)."""
    same_user = hmac.compare_digest(ceremony.user_id.encode(), user_id.encode())
    same_binding = hmac.compare_digest(ceremony.binding.encode(), binding.encode())
    return ceremony.purpose == purpose and same_user and same_binding


class WebAuthnService:
    def __init__(
        self,
        *,
        rp: RelyingParty,
        credentials: CredentialStore,
        state: SharedState,
        mfa: MfaService,
        audit: AuditSink,
        clock: Callable[[], float],
        user_limits: AttemptLimits,
        ip_limits: AttemptLimits,
    ) -> None:
        self.rp = rp
        self._credentials = credentials
        self._state = state
        self._mfa = mfa
        self._audit = audit
        self._clock = clock
        self._user_limits = user_limits
        self._ip_limits = ip_limits
        self._attempts = AttemptGuard(state, clock, ip_limits)

    # -- registration ------------------------------------------------------------------------------------------

    async def start_registration(
        self, caller: Caller, *, binding: str, name: object, unenrolled: Literal["enroll", "deny"]
    ) -> Started:
        """Options to register a new credential named ``name``. A user with no second factor registers one as an
        enrollment (unless ``enrollment.unenrolled: deny``); a user with one adds another only with a recent MFA.
        The user's credentials are excluded; the limit per user is checked before the ceremony and again at the
        end."""
        chosen = credential_name(name)
        await self._may_add(caller, unenrolled)
        existing = await self._credentials.credentials_of(caller.user_id)
        if len(existing) >= self.rp.max_credentials:
            raise TooManyCredentials()
        handle = existing[0].user_handle if existing else secrets.token_bytes(USER_HANDLE_BYTES)
        challenge = secrets.token_bytes(ceremonies.CHALLENGE_BYTES)
        ceremony = Ceremony("register", caller.user_id, binding, challenge, chosen, handle)
        options = ceremonies.registration_options(
            self.rp, user_name=caller.user_id, user_handle=handle, challenge=challenge, existing=existing
        )
        return Started(await self._keep(ceremony), options)

    async def finish_registration(
        self,
        caller: Caller,
        *,
        binding: str,
        ceremony_id: str,
        response: Mapping[str, Any],
        unenrolled: Literal["enroll", "deny"],
    ) -> Registered:
        """Verify the authenticator's answer and keep the credential. The right to add it is judged again here (an
        authenticator app enrolled meanwhile in another tab turns a first-factor registration into a refusal)."""
        ceremony = await self._take(ceremony_id, "register", caller, binding)
        enrolled_before = await self._may_add(caller, unenrolled)
        try:
            new = ceremonies.verify_registration(self.rp, response, ceremony.challenge)
        except InvalidWebAuthnResponse as error:
            await self._emit("mfa.webauthn.register", caller, "failure", method=METHOD, reason=error.reason)
            raise
        credential = WebAuthnCredential(
            credential_id=new.credential_id,
            user_id=caller.user_id,
            user_handle=ceremony.user_handle,
            public_key=new.public_key,
            sign_count=new.sign_count,
            transports=new.transports,
            backup_eligible=new.backup_eligible,
            backup_state=new.backup_state,
            aaguid=new.aaguid,
            name=ceremony.name,
            created_at=self._clock(),
        )
        try:
            await self._credentials.add_credential(credential, limit=self.rp.max_credentials)
        except (CredentialExists, TooManyCredentials) as error:
            await self._emit("mfa.webauthn.register", caller, "refused", method=METHOD, reason=error.code)
            raise
        detail = {"method": METHOD, "aaguid": new.aaguid, "synced": str(new.backup_eligible).lower()}
        await self._emit("mfa.webauthn.register", caller, "success", **detail)
        return Registered(credential, enrolled=not enrolled_before)

    async def _may_add(self, caller: Caller, unenrolled: Literal["enroll", "deny"]) -> bool:
        """Whether the user was enrolled; raises if they may not add a credential now."""
        if await self._mfa.is_enrolled(caller.user_id):
            require_recent_mfa(caller, self._clock())
            return True
        if unenrolled == "deny":
            raise EnrollmentDisabled()
        return False

    # -- authentication ----------------------------------------------------------------------------------------

    async def start_authentication(self, caller: Caller, *, binding: str) -> Started:
        """Options to sign in with one of the user's credentials (only theirs are allowed)."""
        allowed = await self._credentials.credentials_of(caller.user_id)
        if not allowed:
            raise NotEnrolled("No security key or passkey is registered for this user.", code="webauthn_not_enrolled")
        challenge = secrets.token_bytes(ceremonies.CHALLENGE_BYTES)
        ceremony = Ceremony("authenticate", caller.user_id, binding, challenge)
        options = ceremonies.authentication_options(self.rp, challenge=challenge, allowed=allowed)
        return Started(await self._keep(ceremony), options)

    async def verify(
        self,
        caller: Caller,
        *,
        binding: str,
        ceremony_id: str,
        response: Mapping[str, Any],
        event: str = "mfa.verify",
    ) -> Verified:
        """Verify an assertion for the caller's ceremony: ceremony taken once, then lockouts, then the signature,
        origin, relying party, flags and counter, then the counter stored by compare-and-set."""
        ceremony = await self._take(ceremony_id, "authenticate", caller, binding)
        refused: list[InvalidWebAuthnResponse] = []

        async def check() -> Verified | None:
            try:
                return await self._check_assertion(caller, ceremony, response)
            except InvalidWebAuthnResponse as error:
                refused.append(error)
                return None

        async def report(result: str, _: Verified | None) -> None:
            detail = {"method": METHOD} if result in ("failure", "success") else {}
            if refused:
                detail["reason"] = refused[0].reason
            await self._emit(event, caller, result, **detail)

        found = await self._attempts.judge(user_key(caller.user_id), self._user_limits, caller.client_ip, check, report)
        if found is None:
            raise refused[0] if refused else InvalidWebAuthnResponse()
        return found

    async def _check_assertion(
        self, caller: Caller, ceremony: Ceremony, response: Mapping[str, Any], *, rp: RelyingParty | None = None
    ) -> Verified:
        credential_id = ceremonies.credential_id_of(response)
        credential = await self._credentials.get_credential(caller.user_id, credential_id)
        if credential is None:  # unknown, removed, or another user's: the store looks up by user and id together
            raise InvalidWebAuthnResponse("unknown_credential")
        try:
            assertion = ceremonies.verify_authentication(rp or self.rp, response, ceremony.challenge, credential)
            moved = await self._credentials.record_assertion(
                caller.user_id,
                credential.credential_id,
                sign_count=assertion.sign_count,
                backup_state=assertion.backup_state,
                now=self._clock(),
            )
            if not moved:  # another assertion with this count won the compare-and-set, on this replica or another
                raise SignCounterRegressed()
        except SignCounterRegressed:
            await self._emit(
                "mfa.webauthn.counter_regressed",
                caller,
                "refused",
                credential=ceremonies.b64url(credential.credential_id),
                stored=str(credential.sign_count),
            )
            raise
        return Verified(method=methods.WEBAUTHN)

    # -- passkey sign-in ---------------------------------------------------------------------------------------

    @property
    def _passkey_rp(self) -> RelyingParty:
        """The relying party with user verification required, whatever ``webauthn.user_verification`` says: a
        passkey stands for both factors only with the device's PIN or biometric check."""
        return replace(self.rp, user_verification="required")

    async def start_passkey(self) -> Started:
        """Options to sign in with a passkey, before anyone is known: no credentials listed (the authenticator
        offers its discoverable ones for this relying party), user verification required. The ceremony is bound to
        the purpose ``passkey`` and to no user."""
        challenge = secrets.token_bytes(ceremonies.CHALLENGE_BYTES)
        options = ceremonies.authentication_options(self._passkey_rp, challenge=challenge, allowed=[])
        return Started(await self._keep(Ceremony("passkey", "", "", challenge)), options)

    async def verify_passkey(
        self,
        client_ip: str | None,
        *,
        ceremony_id: str,
        response: Mapping[str, Any],
        known: Callable[[str], bool],
    ) -> str:
        """The user a passkey's assertion signs in. The ceremony is taken once; the answer's ``userHandle`` and
        credential id must name one stored credential of a user ``known`` still knows (``unknown_credential``
        otherwise, counted on the address's limits alone, as no user is known: a user removed from the users source
        is nobody, and no success is audited for them); then the user's limits and the address's apply, as for a
        code, and the assertion must verify with user verification (``user_verification``), origin, relying party
        and counter judged as for a second factor. Audited as ``login.passkey``."""
        anonymous = Caller("", client_ip)
        ceremony = await self._take(ceremony_id, "passkey", anonymous, "", event="login.passkey")
        credential = await self._passkey_credential(response)
        if credential is None or not known(credential.user_id):  # nobody to count against but the address
            await self._attempts.judge(
                ip_key(client_ip or "unknown"), self._ip_limits, None, _refused, self._passkey_report(anonymous, [])
            )
            raise InvalidWebAuthnResponse("unknown_credential")
        caller = Caller(credential.user_id, client_ip)
        rp = self._passkey_rp
        refused: list[InvalidWebAuthnResponse] = []

        async def check() -> Verified | None:
            try:
                return await self._check_assertion(caller, ceremony, response, rp=rp)
            except InvalidWebAuthnResponse as error:
                refused.append(error)
                return None

        report = self._passkey_report(caller, refused)
        found = await self._attempts.judge(user_key(caller.user_id), self._user_limits, client_ip, check, report)
        if found is None:
            raise refused[0] if refused else InvalidWebAuthnResponse()
        return caller.user_id

    async def _passkey_credential(self, response: Mapping[str, Any]) -> WebAuthnCredential | None:
        """The stored credential an answer's ``userHandle`` and id name together; None if there is no handle (a
        credential that is not discoverable cannot sign anyone in) or no such pair."""
        credential_id = ceremonies.credential_id_of(response)
        inner = response.get("response")
        try:
            handle = ceremonies.from_b64url(inner.get("userHandle") if isinstance(inner, Mapping) else None, limit=128)
        except ValueError:
            return None
        if not handle:
            return None
        return await self._credentials.credential_by_handle(handle, credential_id)

    def _passkey_report(self, caller: Caller, refused: list[InvalidWebAuthnResponse]) -> Report[Verified]:
        async def report(result: str, _: Verified | None) -> None:
            detail = {"method": PASSKEY_METHOD} if result in ("failure", "success") else {}
            if result == "failure":
                detail["reason"] = refused[0].reason if refused else "unknown_credential"
            await self._emit("login.passkey", caller, result, **detail)

        return report

    # -- managing credentials ----------------------------------------------------------------------------------

    async def credentials(self, user_id: str) -> list[WebAuthnCredential]:
        return await self._credentials.credentials_of(user_id)

    async def rename(self, caller: Caller, credential_id: bytes, name: object) -> WebAuthnCredential:
        chosen = credential_name(name)
        if not await self._credentials.rename_credential(caller.user_id, credential_id, chosen):
            raise CredentialNotFound()
        await self._emit("mfa.webauthn.rename", caller, "success", method=METHOD)
        credential = await self._credentials.get_credential(caller.user_id, credential_id)
        if credential is None:  # removed between the two statements
            raise CredentialNotFound()
        return credential

    async def remove(self, caller: Caller, credential_id: bytes, proof: Callable[[], Awaitable[object]]) -> Removed:
        """Remove one of the caller's credentials once ``proof`` (a fresh second factor: a code, or an assertion of
        any of their keys, this one included) has passed; it raises when it does not."""
        credential = await self._credentials.get_credential(caller.user_id, credential_id)
        if credential is None:
            raise CredentialNotFound()
        await proof()
        if not await self._credentials.delete_credential(caller.user_id, credential_id):
            raise CredentialNotFound()
        await self._emit("mfa.webauthn.remove", caller, "success", method=METHOD)
        return Removed(credential, factors_left=await self._mfa.is_enrolled(caller.user_id))

    # -- ceremonies --------------------------------------------------------------------------------------------

    async def _keep(self, ceremony: Ceremony) -> str:
        ceremony_id = secrets.token_urlsafe(24)
        await self._state.put_ceremony(ceremony_id, ceremony.to_json(), self._clock(), self.rp.challenge_ttl)
        return ceremony_id

    async def _take(
        self, ceremony_id: object, purpose: Purpose, caller: Caller, binding: str, *, event: str = ""
    ) -> Ceremony:
        """The ceremony, taken (so never usable again) before anything is judged; ``CeremonyExpired`` unless it is
        this caller's, for this first factor and this purpose."""
        if not isinstance(ceremony_id, str) or not 0 < len(ceremony_id) <= MAX_CEREMONY_ID:
            raise CeremonyExpired()
        raw = await self._state.take_ceremony(ceremony_id, self._clock())
        try:
            ceremony = Ceremony.from_json(raw) if raw is not None else None
        except (ValueError, KeyError, TypeError):
            ceremony = None
        if ceremony is None or not _belongs(ceremony, purpose, caller.user_id, binding):
            reason = "challenge_unknown" if ceremony is None else "challenge_mismatch"
            method = PASSKEY_METHOD if purpose == "passkey" else METHOD
            await self._emit(event or f"mfa.webauthn.{purpose}", caller, "refused", method=method, reason=reason)
            raise CeremonyExpired()
        return ceremony

    async def _emit(self, event: str, caller: Caller, result: str, **detail: str) -> None:
        at = self._clock()
        user, client = caller.user_id, caller.client_ip
        await self._audit.emit(AuditEvent(at, event, result, user_id=user, client_ip=client, detail=detail))
