"""The builtin first factor and the seed's login: password, then (when MFA is on) a TOTP or backup code.

``login`` returns either "MFA required" with a pending challenge (kept in shared state for ``challenge_ttl``), or
a signed-in result carrying a session and a JWT. A pending challenge completes with ``complete_challenge`` (a code)
or ``complete_challenge_by`` (any second factor: a security key's assertion, say).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mfa_gateway.core import methods
from mfa_gateway.core.errors import BadRequest, InvalidCode, InvalidCredentials, Unauthenticated
from mfa_gateway.core.model import AttemptLimits, AuditEvent
from mfa_gateway.core.session import Session
from mfa_gateway.core.tokens import SigningKeys, new_token_id
from mfa_gateway.core.users import User, canonical_user
from mfa_gateway.ports import AuditSink, PasswordHashing, SharedState
from mfa_gateway.service.attempts import AttemptGuard, login_key
from mfa_gateway.service.mfa import Caller, MfaService, Verified
from mfa_gateway.service.pending import Pending, PendingChallenges
from mfa_gateway.service.sessions import FirstFactorProof, first_factor_session, session_after_mfa

log = logging.getLogger("mfa_gateway.login")

MAX_PASSWORD_LENGTH = 1024

Verify = Callable[[Caller], Awaitable[Verified]]
"""Checks the second factor of the user a pending sign-in belongs to (raising when it is wrong)."""

StoreHash = Callable[[User, str], Awaitable[bool]]
"""Stores a user's password re-hashed to the current settings; False when it cannot (a read-only users file)."""


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    jwt_ttl: float
    session_ttl: float


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: Session
    token: str
    mfa_enabled: bool


@dataclass(frozen=True, slots=True)
class MfaRequired:
    challenge_id: str
    user_id: str


class LoginService:
    def __init__(
        self,
        *,
        users: Callable[[str], User | None],
        mfa: MfaService,
        state: SharedState,
        pending: PendingChallenges,
        hashing: PasswordHashing,
        audit: AuditSink,
        signing_keys: Callable[[], SigningKeys],
        clock: Callable[[], float],
        policy: TokenPolicy,
        login_limits: AttemptLimits,
        ip_limits: AttemptLimits,
        store_hash: StoreHash | None = None,
    ) -> None:
        self._users = users
        self._store_hash = store_hash
        self._mfa = mfa
        self._pending = pending
        self._hashing = hashing
        self._audit = audit
        self._signing_keys = signing_keys
        self._clock = clock
        self.policy = policy
        self._login_limits = login_limits
        self._attempts = AttemptGuard(state, clock, ip_limits)

    def knows(self, user_id: str) -> bool:
        """Whether the users source still holds ``user_id`` (a passkey of a removed user signs nobody in)."""
        return self._users(user_id) is not None

    async def check_password(self, username: str, password: str, client_ip: str | None) -> User:
        """The first factor alone: the user if the password is right, with attempt limits on name and address."""
        if len(password) > MAX_PASSWORD_LENGTH:
            raise BadRequest("The password is too long.", code="invalid_password")
        user_id = canonical_user(username)
        caller = Caller(user_id, client_ip)

        async def check() -> User | None:
            user = self._users(user_id)
            matched = await self._hashing.matches(user.password_hash if user else None, password)
            return user if matched and user is not None else None

        async def report(result: str, _: User | None) -> None:
            await self._emit("login.password", caller, result)

        user = await self._attempts.judge(login_key(user_id), self._login_limits, client_ip, check, report)
        if user is None:
            raise InvalidCredentials()
        await self._upgrade_hash(user, password)
        return user

    async def _upgrade_hash(self, user: User, password: str) -> None:
        """Re-hash a password made under older Argon2id settings, now that it is known: the unknown users' dummy hash
        has the current settings, so an old cheap hash would let timing tell a known user from an unknown one. Once
        the store refuses (a read-only users file), this process stops trying: the warning was logged."""
        if self._store_hash is None or not self._hashing.needs_rehash(user.password_hash):
            return
        if not await self._store_hash(user, await self._hashing.hash(password)):
            self._store_hash = None

    async def login(
        self, username: str, password: str, mfa_token: str | None, client_ip: str | None
    ) -> SignedIn | MfaRequired:
        """The seed's login: password, then the MFA code in the same call or through a pending challenge. A user
        whose only second factor is a security key gets the pending challenge (a code could not be right)."""
        user = await self.check_password(username, password, client_ip)
        now = self._clock()
        factors = await self._mfa.factors(user.username)
        if not factors.enrolled:
            return self.signed_in_with_password(user)
        if not mfa_token or not factors.totp:
            pending = Pending(kind="login", user_id=user.username, auth_time=now, methods=("pwd",))
            return MfaRequired(challenge_id=await self._pending.create(pending), user_id=user.username)
        try:
            verified = await self._mfa.verify(Caller(user.username, client_ip), mfa_token, event="login.mfa")
        except BadRequest as exc:  # a token of the wrong shape (letters, length) cannot be right: the seed's 401
            raise InvalidCode() from exc
        return await self._after_mfa(user, ("pwd",), now, verified.method)

    async def complete_challenge(self, challenge_id: str, mfa_token: str, client_ip: str | None) -> SignedIn:
        """Finish a login that answered "MFA required": verify the code, then consume the challenge once."""

        async def code(caller: Caller) -> Verified:
            return await self._mfa.verify(caller, mfa_token, event="login.mfa")

        return await self.complete_challenge_by(challenge_id, code, client_ip)

    async def complete_challenge_by(self, challenge_id: str, verify: Verify, client_ip: str | None) -> SignedIn:
        """Finish a login that answered "MFA required" with any second factor: ``verify`` checks it for the pending
        sign-in's user, then the challenge is consumed once."""
        expired = Unauthenticated("The sign-in has expired; sign in again.", code="challenge_expired")
        pending = await self._pending.get(challenge_id)
        if pending is None or pending.kind != "login":
            raise expired
        user = self._users(pending.user_id)
        if user is None:
            raise expired
        verified = await verify(Caller(pending.user_id, client_ip))
        if await self._pending.take(challenge_id) is None:
            raise InvalidCode()
        return await self._after_mfa(user, pending.methods, pending.auth_time, verified.method)

    def signed_in_with_password(self, user: User) -> SignedIn:
        """A password sign-in before any MFA: a first-factor session (and a JWT that says so)."""
        now = self._clock()
        session = first_factor_session(_proof(user, ("pwd",), now), now=now, ttl=self.policy.session_ttl)
        return self._signed_in(user, session, mfa_enabled=False)

    async def signed_in_with_passkey(self, user_id: str) -> SignedIn:
        """A passkey's verified assertion (``WebAuthnService.verify_passkey``): both factors at once. The first
        factor is recorded as ``pin``, the device's user verification (RFC 8176: a PIN or pattern unlocking a key
        on the device; a biometric unlock cannot be told apart), the second as ``hwk``; so the session has MFA and
        a phishing-resistant method now, and stays distinct from a password and a key (``pwd``, ``hwk``).
        ``InvalidCredentials`` if the user is gone from the users source."""
        user = self._users(user_id)
        if user is None:
            raise InvalidCredentials()
        return await self._after_mfa(user, (methods.PASSKEY_FIRST_FACTOR,), self._clock(), methods.WEBAUTHN)

    async def _after_mfa(self, user: User, methods: tuple[str, ...], auth_time: float, method: str) -> SignedIn:
        proof = _proof(user, methods, auth_time)
        session = await session_after_mfa(proof, method, now=self._clock(), ttl=self.policy.session_ttl)
        return self._signed_in(user, session, mfa_enabled=True)

    def _signed_in(self, user: User, session: Session, *, mfa_enabled: bool) -> SignedIn:
        """The session and a JWT carrying the same facts (its ``sid``, so signing out revokes both)."""
        now = session.issued_at
        claims = {
            "iss": self.policy.issuer,
            "aud": self.policy.audience,
            "sub": user.username,
            "iat": int(now),
            "exp": int(now + self.policy.jwt_ttl),
            "auth_time": int(session.auth_time),
            "amr": list(session.methods),
            "sid": session.sid,
            "jti": new_token_id(),
            **({"email": user.email} if user.email else {}),
        }
        return SignedIn(user=user, session=session, token=self._signing_keys().issue(claims), mfa_enabled=mfa_enabled)

    async def _emit(self, event: str, caller: Caller, result: str) -> None:
        await self._audit.emit(
            AuditEvent(at=self._clock(), event=event, result=result, user_id=caller.user_id, client_ip=caller.client_ip)
        )


def _proof(user: User, methods: tuple[str, ...], auth_time: float) -> FirstFactorProof:
    return FirstFactorProof(user.username, methods, auth_time, email=user.email, groups=user.groups)
