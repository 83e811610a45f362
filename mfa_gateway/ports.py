"""The gateway's ports: small abstract classes that adapters implement and the service layer uses.

Each port has one contract test suite (tests/contracts/) that every implementation must pass. Adapters raise
``DependencyUnavailable`` when their backend cannot be reached, never a driver exception; secret providers raise
``TransientSecretError`` / ``PermanentSecretError`` instead, because the secret cache treats the two differently.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mfa_gateway.core.devices import DeviceGrant
from mfa_gateway.core.keyring import Decrypted
from mfa_gateway.core.model import (
    AttemptLimits,
    AuditEvent,
    CodeJudgement,
    Enrollment,
    NewBackupCode,
    Revocation,
    StepClaim,
    StoredBackupCode,
    WebAuthnCredential,
)
from mfa_gateway.core.secret import Secret
from mfa_gateway.core.session_records import SessionRecord
from mfa_gateway.secrets.refs import SecretRef


class EnrollmentStore(abc.ABC):
    """Durable enrollments, backup codes and audit events (SQL)."""

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Bring the schema to the newest version (idempotent, safe with several replicas starting at once)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` unless the database answers."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def get_enrollment(self, user_id: str) -> Enrollment | None: ...

    @abc.abstractmethod
    async def save_pending(self, enrollment: Enrollment, codes: Sequence[NewBackupCode]) -> None:
        """Store a pending enrollment with its backup codes, replacing an earlier pending one and its codes.

        Raises ``AlreadyEnrolled`` if the user has an active enrollment: an active one is never replaced.
        """

    @abc.abstractmethod
    async def activate(self, user_id: str, now: float) -> bool:
        """Turn the pending enrollment active; False if there is none pending."""

    @abc.abstractmethod
    async def delete_enrollment(self, user_id: str) -> bool:
        """Delete the enrollment and all its backup codes; False if there was none."""

    @abc.abstractmethod
    async def replace_backup_codes(self, user_id: str, codes: Sequence[NewBackupCode]) -> None:
        """Atomically replace the user's whole backup-code set (old codes stop working)."""

    @abc.abstractmethod
    async def unused_backup_codes(self, user_id: str, lookup: str) -> list[StoredBackupCode]:
        """Unused codes of the user in one lookup bucket (usually one or none)."""

    @abc.abstractmethod
    async def consume_backup_code(self, code_id: int, now: float) -> bool:
        """Mark the code used; True for exactly one caller even under concurrent calls from many processes."""

    @abc.abstractmethod
    async def count_unused_backup_codes(self, user_id: str) -> int: ...

    @abc.abstractmethod
    async def claim_totp_step(self, user_id: str, step: int) -> bool:
        """Atomically record ``step`` as the newest TOTP step accepted for the user's enrollment, durably.

        True only if ``step`` is greater than the step stored (or none is stored yet): exactly one caller wins a step
        even under concurrent calls from many processes, and steps only move forward. False if the user has no
        enrollment. A new enrollment (``save_pending``) starts with no step. This is the replay mark that survives
        a restart of shared state; ``SharedState.judge_totp_attempt`` claims it first, fast.
        """

    @abc.abstractmethod
    async def update_secret(self, user_id: str, expected_ciphertext: bytes, ciphertext: bytes, key_id: str) -> bool:
        """Compare-and-set the encrypted secret (re-encryption under a new key); False if it changed meanwhile."""

    @abc.abstractmethod
    async def list_enrollments(self, after_user: str | None, limit: int) -> list[Enrollment]:
        """Enrollments ordered by user id, starting after ``after_user`` (keyset pagination)."""

    @abc.abstractmethod
    async def record_audit(self, events: Sequence[AuditEvent]) -> None:
        """Keep the events, all in one transaction."""

    @abc.abstractmethod
    async def recent_audit(self, user_id: str, limit: int) -> list[AuditEvent]:
        """The user's newest audit events, newest first."""


class CredentialStore(abc.ABC):
    """Durable WebAuthn credentials (security keys and passkeys), many per user (SQL, beside the enrollments)."""

    @abc.abstractmethod
    async def add_credential(self, credential: WebAuthnCredential, *, limit: int) -> None:
        """Keep a newly registered credential. Raises ``CredentialExists`` if its id is registered already (to any
        user: a credential id names one key), ``TooManyCredentials`` if the user holds ``limit`` already; both
        judged atomically, so concurrent registrations never pass the limit."""

    @abc.abstractmethod
    async def credentials_of(self, user_id: str) -> list[WebAuthnCredential]:
        """The user's credentials, oldest first."""

    @abc.abstractmethod
    async def get_credential(self, user_id: str, credential_id: bytes) -> WebAuthnCredential | None:
        """The user's credential with this id; None if it is unknown or another user's."""

    @abc.abstractmethod
    async def credential_by_handle(self, user_handle: bytes, credential_id: bytes) -> WebAuthnCredential | None:
        """The credential with this id whose user has this handle (a passkey's assertion names both); None if
        either is unknown or they do not belong together."""

    @abc.abstractmethod
    async def count_credentials(self, user_id: str) -> int: ...

    @abc.abstractmethod
    async def credential_counts(self, after_user: str | None, limit: int) -> list[tuple[str, int]]:
        """Users holding credentials and how many each holds, ordered by user id, starting after ``after_user``
        (keyset pagination, as ``list_enrollments``)."""

    @abc.abstractmethod
    async def record_assertion(
        self, user_id: str, credential_id: bytes, *, sign_count: int, backup_state: bool, now: float
    ) -> bool:
        """Compare-and-set after a verified assertion: store ``sign_count`` (and the backup state, last use) only if
        it moves the stored count forward, or both are 0 (an authenticator without a counter). True for the one
        caller that moved it: of two concurrent assertions reporting the same non-zero count, exactly one wins,
        on any number of replicas. False also if the credential is gone."""

    @abc.abstractmethod
    async def rename_credential(self, user_id: str, credential_id: bytes, name: str) -> bool:
        """False if the user has no such credential."""

    @abc.abstractmethod
    async def delete_credential(self, user_id: str, credential_id: bytes) -> bool:
        """False if the user has no such credential."""

    @abc.abstractmethod
    async def delete_credentials(self, user_id: str) -> int:
        """Delete every credential of the user (an administrator's reset); how many there were."""


class DeviceStore(abc.ABC):
    """Durable remembered devices ("remember this device"), found by the SHA-256 hash of their cookie's token (SQL,
    beside the enrollments). Grants only end: revoked (kept until they expire or the user's next grant) or expired."""

    @abc.abstractmethod
    async def add_device_grant(self, grant: DeviceGrant, *, keep: int, now: float) -> None:
        """Keep a new grant. Grants that have ended by ``now`` (the user's revoked ones, anyone's expired ones) are
        deleted, and the user's oldest active grants revoked so that at most ``keep`` stay active with the new one,
        judged atomically for the user on any number of replicas."""

    @abc.abstractmethod
    async def device_grant(self, token_hash: str) -> DeviceGrant | None:
        """The grant with this token hash, active or not; None if there is none."""

    @abc.abstractmethod
    async def use_device_grant(self, grant_id: str, now: float) -> bool:
        """Record a use at ``now``, only if the grant is still active then: True for an active grant. One
        conditional write, so a revocation that commits first is never overtaken by a use judged before it."""

    @abc.abstractmethod
    async def device_grants_of(self, user_id: str, now: float) -> list[DeviceGrant]:
        """The user's grants still active at ``now``, oldest first."""

    @abc.abstractmethod
    async def revoke_device_grant(self, user_id: str, grant_id: str, now: float) -> bool:
        """Revoke one of the user's active grants; False if the user has no such active grant."""

    @abc.abstractmethod
    async def revoke_device_grants(self, user_id: str, now: float) -> int:
        """Revoke every active grant of the user; how many there were."""


class SessionRecordStore(abc.ABC):
    """Records of issued sessions for the account page (SQL, beside the enrollments), written where a session is
    issued and never read on an authenticated request. A record only ends: revoked, or expired (then deleted)."""

    @abc.abstractmethod
    async def add_session_record(self, record: SessionRecord, *, now: float) -> None:
        """Keep a new record; records expired by ``now`` (anyone's, revoked or not) are deleted. A revoked record
        stays, never listed, until its expiry: so the purge is a range on the expiry index, never a scan of every
        live session on each sign-in."""

    @abc.abstractmethod
    async def session_records_of(self, user_id: str, now: float) -> list[SessionRecord]:
        """The user's records still active at ``now``, oldest first."""

    @abc.abstractmethod
    async def end_session_record(self, sid: str, now: float) -> bool:
        """Mark the record of session ``sid`` revoked (its session was signed out or replaced); False if none is
        active."""

    @abc.abstractmethod
    async def revoke_session_record(self, user_id: str, record_id: str, now: float) -> SessionRecord | None:
        """Revoke one of the user's active records by its public id and return it (its ``sid`` is then revoked on
        every replica by the caller); None if the user has no such active record."""

    @abc.abstractmethod
    async def revoke_session_records(self, user_id: str, now: float, *, keep_sid: str | None) -> list[SessionRecord]:
        """Revoke every active record of the user but the one of ``keep_sid``, and return them."""


class SharedState(abc.ABC):
    """Short-lived state shared by every replica: attempt counters, replay marks, pending challenges.

    ``now`` is always passed in (seconds since the epoch): decisions never read a clock of their own, so tests
    inject time. Backends may use real TTLs only to collect garbage, with margins past any decision's horizon.
    """

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def lock_remaining(self, keys: Sequence[str], now: float) -> float:
        """Seconds until every key is unlocked: 0.0 if none is locked, ``math.inf`` for a hard lock."""

    @abc.abstractmethod
    async def admit_attempt(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> float:
        """Atomically: if a key is locked, return the longest lock in force (``math.inf`` for a hard lock); if the
        failures counted on a key plus the attempts in flight on it could reach its limit, return
        ``ATTEMPTS_BUSY`` (negative; no lock is made); otherwise reserve the attempt on every key and return 0.0: it may
        be judged, and must then be finished with ``finish_attempt``.

        Reserving before judging is what keeps concurrent guesses within the limits: an attempt admitted on any
        replica is already counted when the next one asks, while a correct one never counts as a failure."""

    @abc.abstractmethod
    async def finish_attempt(
        self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float, *, failed: bool, forget: Sequence[str] = ()
    ) -> None:
        """Release an admitted attempt's reservation on each key; ``failed``: count it as one failure (locking a key
        that reaches its limit). Keys in ``forget`` are cleared instead (the subject of a success)."""

    @abc.abstractmethod
    async def clear_failures(self, keys: Sequence[str]) -> None:
        """Forget failures and locks of these keys (after a success, or by an administrator)."""

    @abc.abstractmethod
    async def record_failure(self, keyed_limits: Sequence[tuple[str, AttemptLimits]], now: float) -> None:
        """Count one failure on each key (locking a key that reaches its limit) for an attempt that holds no
        reservation: one ``judge_totp_attempt`` accepted that a later, durable check refused."""

    @abc.abstractmethod
    async def judge_totp_attempt(
        self,
        keyed_limits: Sequence[tuple[str, AttemptLimits]],
        now: float,
        *,
        claim: StepClaim | None,
        forget: Sequence[str] = (),
    ) -> CodeJudgement:
        """A TOTP attempt whose code was already judged where the secret is (``claim``: the step it matched; None:
        wrong), settled in one atomic step, no reservation held in between.

        Refused first, as ``admit_attempt`` refuses (a lock on any key; the failures counted plus the attempts of
        others in flight reaching a limit), writing nothing: whether the code was right never shows while refused.
        Otherwise ``claim.step`` is recorded as the user's newest used TOTP step if it is greater than every step
        claimed before for that user (a code, and any code of an earlier step, is accepted at most once across all
        replicas): accepted, the keys in ``forget`` are cleared. A wrong code, or a step claimed before (a replay),
        counts one failure on every key, as ``finish_attempt`` does."""

    @abc.abstractmethod
    async def claim_once(self, key: str, now: float, ttl: float) -> bool:
        """True for exactly one caller per key within ``ttl`` seconds (atomic set-if-absent)."""

    @abc.abstractmethod
    async def put_challenge(self, challenge_id: str, payload: bytes, now: float, ttl: float) -> None: ...

    @abc.abstractmethod
    async def get_challenge(self, challenge_id: str, now: float) -> bytes | None: ...

    @abc.abstractmethod
    async def take_challenge(self, challenge_id: str, now: float) -> bytes | None:
        """Atomically read and delete: a challenge completes at most once."""

    @abc.abstractmethod
    async def count_challenges(self, now: float) -> int:
        """Pending challenges not yet taken or expired, across every replica (a metric; not on the hot path)."""

    @abc.abstractmethod
    async def put_ceremony(self, ceremony_id: str, payload: bytes, now: float, ttl: float) -> None:
        """Keep a WebAuthn ceremony (its challenge and whom it was issued to) for ``ttl`` seconds. Apart from the
        pending sign-ins of ``put_challenge``: an id of one kind never finds the other, nor is counted with it."""

    @abc.abstractmethod
    async def take_ceremony(self, ceremony_id: str, now: float) -> bytes | None:
        """Atomically read and delete a ceremony that has not expired by ``now``: across every replica, exactly one
        caller gets it, so one challenge answers at most one ceremony."""

    @abc.abstractmethod
    async def revoke(self, revocation: Revocation) -> None:
        """Record a revocation until ``revocation.until`` and announce it to every replica's feed."""

    @abc.abstractmethod
    async def revocations(self, now: float) -> list[Revocation]:
        """Every revocation still in force (a replica's starting view, and its resync after a feed outage)."""

    @abc.abstractmethod
    def revocation_feed(self) -> AsyncIterator[Revocation]:
        """Revocations as they are announced, from the moment of subscribing.

        Raises ``DependencyUnavailable`` when the feed breaks; the consumer resubscribes and resyncs.
        """


class AuditSink(abc.ABC):
    """Where audit events go (a JSON-lines stream, the store, or both)."""

    @abc.abstractmethod
    async def emit(self, event: AuditEvent) -> None: ...

    async def flush(self) -> None:  # noqa: B027 - most sinks keep nothing back
        """Return once every event emitted so far is kept (before the process closes its store)."""


class PasswordHashing(abc.ABC):
    """Argon2id for passwords and backup codes: slow on purpose, so implementations run it off the event loop with
    bounded concurrency (``mfa_gateway.runtime.hashing.HashingPool``)."""

    @abc.abstractmethod
    async def hash(self, value: str) -> str: ...

    @abc.abstractmethod
    async def matches(self, stored_hash: str | None, value: str) -> bool:
        """Compare; a None hash (unknown user) costs the same time and never matches."""

    @abc.abstractmethod
    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a hash was made with other settings than the current ones (re-hash at the next sign-in)."""


class SecretBackendError(Exception):
    """A secret provider could not deliver a secret. The message names the reference and the fix, never a value.

    Not an ``MfaError``: these messages name internal locations and are meant for logs and status pages. The secret
    cache turns them into a ``SecretUnavailable`` (a ``DependencyUnavailable``) with a generic client message.

        SecretBackendError
         +-- TransientSecretError   timeout, connection refused, 5xx, Vault sealed or standby, AWS throttling
         |                          (the cache keeps serving the last good value, up to its max_stale bound)
         +-- PermanentSecretError   403 after a fresh login, not found, deleted or destroyed version, missing
                                    field, malformed value (the cache fails closed for that secret)
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The backend's HTTP status when there was one (lets a caller tell a rejected request from an outage)."""


class TransientSecretError(SecretBackendError):
    """Worth retrying: the backend is down, sealed, overloaded or slow."""


class PermanentSecretError(SecretBackendError):
    """Retrying the same request will not help until someone changes the secret, its policy or the credentials."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One secret value as read from its backend."""

    value: Secret[str]
    version: str
    """An opaque version id: equal ids mean an equal value (KV version, AWS VersionId, a keyed file digest)."""
    source: str
    """Where it came from, for humans: ``vault kv secret/mfa (version 3)``; never part of the value."""


class SecretProvider(abc.ABC):
    """Reads secret values of one reference scheme from one backend.

    Methods are **blocking** (hvac and boto3 are synchronous): the secret cache calls them in a worker thread, so
    implementations must be thread-safe. They raise only ``TransientSecretError`` or ``PermanentSecretError``.
    """

    @abc.abstractmethod
    def fetch(self, ref: SecretRef) -> Fetched:
        """Read the value the reference names now."""

    @abc.abstractmethod
    def current_version(self, ref: SecretRef) -> str | None:
        """The version ``fetch`` would return, by a cheaper request (metadata only); None if there is no cheap way.

        The cache compares it with the version it holds and skips the fetch when they are equal.
        """

    def previous(self, ref: SecretRef) -> Fetched | None:
        """The value before the current one, where the backend keeps it by name (AWS ``AWSPREVIOUS``).

        Used for alternating-user rotation: a caller whose login fails with the current password tries the previous
        one. None when the backend has no such notion, the reference pins a version, or there is no previous value.
        """
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook: most providers hold nothing to release
        """Release connections (default: nothing to release)."""


class Credential(NamedTuple):
    """A login for Redis or the database: a password, and the user name when the secret names one."""

    username: str | None
    password: str


class PasswordSource(abc.ABC):
    """A Redis or database login that may rotate while the gateway runs.

    Adapters ask for ``candidates()`` at every new connection: the current credential first, then the previous one
    where the backend keeps it (AWS ``AWSPREVIOUS``), so a login refused with one is retried with the next. A secret
    holding ``{"username": …, "password": …}`` (AWS's format for database secrets) gives both, so an
    alternating-users rotation drops no request. After a refused login adapters call ``refresh()``, which re-reads
    the secret from its backend (at most once every few seconds).
    """

    @abc.abstractmethod
    def candidates(self) -> Sequence[Credential]:
        """Credentials to try, most likely first (never empty)."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Re-read the secret now (a login failed: it may have rotated before the cache noticed)."""


class FixedPassword(PasswordSource):
    """A password that does not change (a literal in demo mode, or a test)."""

    def __init__(self, password: str) -> None:
        self._credential = Credential(None, password)

    def candidates(self) -> Sequence[Credential]:
        return (self._credential,)

    async def refresh(self) -> None:
        return None


class TotpCipher(abc.ABC):
    """Encrypts TOTP secrets at rest: the local keyring, or a Vault Transit key whose material never leaves Vault.

    A ciphertext is bound to the user it belongs to (``context``): moved to another user's row it does not open.
    """

    @property
    @abc.abstractmethod
    def primary(self) -> str:
        """The key id new ciphertext gets (``rekey`` moves every row to it)."""

    @abc.abstractmethod
    def key_id_of(self, ciphertext: bytes) -> str:
        """The key id a ciphertext was made with."""

    @abc.abstractmethod
    async def encrypt(self, plaintext: bytes, *, context: str) -> bytes: ...

    @abc.abstractmethod
    async def decrypt(self, ciphertext: bytes, *, context: str) -> Decrypted:
        """The plaintext and the key id; ``KeyringError`` if it does not open (unknown or disabled key, tampered)."""

    @abc.abstractmethod
    async def reencrypt(self, ciphertext: bytes, *, context: str) -> bytes:
        """The same secret under the primary key (Transit: a rewrap, the plaintext stays inside Vault)."""

    def opens_locally(self, ciphertext: bytes) -> bool:
        """Whether ``decrypt`` opens this ciphertext in this process (False: it asks a service, e.g. Vault)."""
        return True

    async def start(self) -> None:  # noqa: B027 - an optional hook: the local keyring needs no start-up
        """Prepare before the first use (Transit: learn the key's newest version)."""


class KubernetesError(Exception):
    """A call to the Kubernetes API failed: unreachable, refused (the message names the RBAC it needs), or an
    answer it cannot read. The message names the object and the fix, never the token.

        KubernetesError
         +-- KubernetesConflict   409: the object exists already, or changed since it was read (resourceVersion)
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class KubernetesConflict(KubernetesError):
    """Another writer was first: read the object again and use what it wrote."""


class KubernetesApi(abc.ABC):
    """The few calls of the Kubernetes API the injector's ``tls.generate`` mode makes: its one Secret, in its own
    namespace, and its one MutatingWebhookConfiguration. Objects are the API's JSON, as dicts."""

    @property
    @abc.abstractmethod
    def namespace(self) -> str:
        """The namespace the injector runs in (where its Secret and Service are)."""

    @abc.abstractmethod
    async def read_secret(self, name: str) -> dict[str, Any] | None:
        """The Secret, or None if there is none."""

    @abc.abstractmethod
    async def create_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        """Create it; ``KubernetesConflict`` if a Secret of that name exists."""

    @abc.abstractmethod
    async def replace_secret(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        """Replace it as read (its ``metadata.resourceVersion``); ``KubernetesConflict`` if it changed since."""

    @abc.abstractmethod
    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        """The MutatingWebhookConfiguration, or None if there is none."""

    @abc.abstractmethod
    async def patch_webhook_configuration(self, name: str, patch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON Patch to it."""

    @abc.abstractmethod
    async def close(self) -> None: ...
