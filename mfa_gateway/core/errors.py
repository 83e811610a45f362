"""Domain errors.

Every error carries a stable machine ``code`` and a human ``message``; none carries an HTTP status. The web layer
maps codes to statuses in one place (``mfa_gateway.web.errors``). Messages never contain a code, secret or password.

    MfaError
     +-- BadRequest              (bad_request, invalid_json, invalid_code_format, ...)
     |    +-- InvalidHost        (invalid_host) a Host or forwarded host that is not a plain host[:port]
     +-- Unauthenticated         (unauthenticated, invalid_credentials, invalid_session)
     |    +-- CeremonyExpired    (webauthn_challenge_expired) a WebAuthn challenge unknown, expired, taken, or another's
     +-- InvalidCode             (invalid_mfa_token) a TOTP or backup code that did not verify, or was replayed
     |    +-- InvalidWebAuthnResponse   (invalid_webauthn_response) carries a ``reason`` for the audit log
     |         +-- SignCounterRegressed (webauthn_counter_regressed) a cloned authenticator, or a replay
     +-- Forbidden               (forbidden, csrf_failed, enrollment_disabled, mfa_required, fresh_mfa_required)
     +-- NotFound                (not_found, not_enrolled, totp_not_enrolled, webauthn_unavailable,
     |                            credential_not_found, device_not_found)
     +-- Conflict                (already_enrolled, enrollment_not_pending, credential_exists, too_many_credentials)
     +-- LockedOut               (locked_out) carries ``retry_after`` seconds
     |    +-- AttemptsBusy       (attempts_busy) other attempts for the account or address are being checked
     +-- DependencyUnavailable   (dependency_unavailable) Redis, the database or a secret backend is down
"""

from __future__ import annotations


class MfaError(Exception):
    code = "error"
    default_message = "The request failed."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)


class BadRequest(MfaError):
    code = "bad_request"
    default_message = "The request is malformed."


class InvalidHost(BadRequest):
    """The request's host (``Host``, a trusted ``X-Forwarded-Host`` or a forward-auth target's authority) is not a
    plain ``host[:port]``: refused before policy, never matched as "no host"."""

    code = "invalid_host"
    default_message = "The request's host is not a valid host name."


class Unauthenticated(MfaError):
    code = "unauthenticated"
    default_message = "Sign in first."


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    default_message = "Invalid credentials"


class CeremonyExpired(Unauthenticated):
    """A WebAuthn answer whose challenge this gateway does not hold for this caller: never issued, expired, already
    taken (a replay), or issued to another user, session or purpose. The cases are not told apart."""

    code = "webauthn_challenge_expired"
    default_message = "The security key request has expired or was already used; start again."


class InvalidCode(MfaError):
    """A one-time code did not verify (wrong, expired, or already used: the three are not told apart)."""

    code = "invalid_mfa_token"
    default_message = "Invalid MFA token"


class InvalidWebAuthnResponse(InvalidCode):
    """A WebAuthn answer that did not verify. ``reason`` (a short fixed word: ``origin``, ``signature``, ...) goes to
    the audit log; the client is told only the code."""

    code = "invalid_webauthn_response"
    default_message = "The security key's answer could not be verified."

    def __init__(self, reason: str = "invalid", message: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class SignCounterRegressed(InvalidWebAuthnResponse):
    """A correctly signed assertion whose signature counter did not move forward: a cloned authenticator, or a
    replayed answer. Refused and audited on its own."""

    code = "webauthn_counter_regressed"
    default_message = "This security key's counter went backwards, which a copied key would do; the sign-in is refused."

    def __init__(self) -> None:
        super().__init__("counter_regressed")


class Forbidden(MfaError):
    code = "forbidden"
    default_message = "This action is not allowed."


class EnrollmentDisabled(Forbidden):
    code = "enrollment_disabled"
    default_message = "Self-service enrollment is off; an administrator sets up your second factor."


class SecondFactorRequired(Forbidden):
    code = "mfa_required"
    default_message = "Verify with your second factor first."


class FreshSecondFactorRequired(Forbidden):
    code = "fresh_mfa_required"
    default_message = "Adding a second factor needs a recent verification with one you have; verify again first."


class NotFound(MfaError):
    code = "not_found"
    default_message = "Not found."


class NotEnrolled(NotFound):
    code = "not_enrolled"
    default_message = "MFA is not enabled for this user."


class WebAuthnUnavailable(NotFound):
    code = "webauthn_unavailable"
    default_message = "Security keys and passkeys are not configured on this gateway."


class PasskeySigninUnavailable(NotFound):
    code = "passkey_signin_unavailable"
    default_message = "Passkey sign-in needs the builtin sign-in (identity.source: builtin) and WebAuthn."


class CredentialNotFound(NotFound):
    code = "credential_not_found"
    default_message = "No such security key or passkey."


class DeviceNotFound(NotFound):
    code = "device_not_found"
    default_message = "No such remembered device."


class SessionNotFound(NotFound):
    code = "session_not_found"
    default_message = "No such session."


class Conflict(MfaError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class AlreadyEnrolled(Conflict):
    code = "already_enrolled"
    default_message = "MFA is already active for this user; disable it first to enroll again."


class CredentialExists(Conflict):
    code = "credential_exists"
    default_message = "This security key or passkey is already registered."


class TooManyCredentials(Conflict):
    code = "too_many_credentials"
    default_message = "The most security keys and passkeys one user may register are registered; remove one first."


class EnrollmentNotPending(Conflict):
    code = "enrollment_not_pending"
    default_message = "There is no pending enrollment to verify; start one with api/mfa/enable."


class LockedOut(MfaError):
    code = "locked_out"
    default_message = "Too many failed attempts; try again later."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class AttemptsBusy(LockedOut):
    """No lock: enough other attempts for this account or address are being checked right now that this one could
    pass its limit, so it waits a moment (``Retry-After: 1``)."""

    code = "attempts_busy"
    default_message = "Other attempts for this account or address are being checked; try again in a moment."

    def __init__(self) -> None:
        super().__init__(1.0)


class DependencyUnavailable(MfaError):
    code = "dependency_unavailable"
    default_message = "A backing service is unavailable; try again shortly."

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message)
        self.dependency = dependency
