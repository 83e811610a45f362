"""The SQL schema, as SQLAlchemy Core tables.

Migrations under ``migrations/versions`` create exactly these tables; a contract test compares the migrated
database against this metadata. Times are floats (seconds since the epoch) because the domain passes ``now``
as a float and never reads a clock of its own.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

# Named constraints keep migrations deterministic and let later migrations drop or alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

enrollments = Table(
    "enrollments",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("secret_ciphertext", LargeBinary, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("digits", Integer, nullable=False),
    Column("period", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("activated_at", Double, nullable=True),
    Column("updated_at", Double, nullable=False),
    # The newest TOTP time step accepted for this enrollment (None: none yet). The shared-state mark refuses a
    # replay fast; this one survives a Redis that restarts without persistence (migration 0002).
    Column("last_step", BigInteger, nullable=True),
    CheckConstraint("status IN ('pending', 'active')", name="status"),
)

backup_codes = Table(
    "backup_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "user_id",
        Text,
        ForeignKey("enrollments.user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("lookup", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("used_at", Double, nullable=True),
    # Leads with user_id, so it also serves per-user queries and the cascading delete.
    Index("ix_backup_codes_user_id_lookup", "user_id", "lookup"),
    # Never reuse an id (SQLite would hand out max(id)+1 again after a delete): a code id read before
    # replace_backup_codes must not name a new code when consumed afterwards.
    sqlite_autoincrement=True,
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("event", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("client_ip", Text, nullable=True),
    Column("detail", Text, nullable=False),
    # Serves "the user's newest events" without a sort.
    Index("ix_audit_events_user_id_at", "user_id", "at"),
    sqlite_autoincrement=True,
)

webauthn_credentials = Table(
    "webauthn_credentials",
    metadata,
    # The authenticator's handle for its private key: one key, so unique across every user (migration 0004).
    Column("credential_id", LargeBinary, primary_key=True),
    # No foreign key to enrollments: a user may hold credentials and no TOTP enrollment at all.
    Column("user_id", Text, nullable=False),
    # The random handle an authenticator returns with a passkey's assertion: one per user (migration 0006 indexes it).
    Column("user_handle", LargeBinary, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("transports", Text, nullable=False),  # comma-separated hints from a fixed set, e.g. "nfc,usb"
    Column("backup_eligible", Boolean(create_constraint=False), nullable=False),
    Column("backup_state", Boolean(create_constraint=False), nullable=False),
    Column("aaguid", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=True),
    Index("ix_webauthn_credentials_user_id", "user_id"),
    Index("ix_webauthn_credentials_user_handle", "user_handle"),
)

device_grants = Table(
    "device_grants",
    metadata,
    # A public handle for the account page; the cookie's token is kept only as its SHA-256 (migration 0005).
    Column("id", Text, primary_key=True),
    Column("token_hash", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    # How the user proved who they are when the device was trusted (pwd, hdr, app): the grant serves that alone.
    Column("factor", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    Index("ix_device_grants_token_hash", "token_hash", unique=True),
    Index("ix_device_grants_user_id", "user_id"),
    # Serves the purge of expired grants.
    Index("ix_device_grants_expires_at", "expires_at"),
)

session_records = Table(
    "session_records",
    metadata,
    # A public handle for the account page; the sid names the session to the revocations (migration 0007). A sid
    # is no credential: a session is a cookie sealed under the keyring, which a database dump does not hold.
    Column("id", Text, primary_key=True),
    Column("sid", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    # RFC 8176 amr values, space-separated.
    Column("methods", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index("ix_session_records_sid", "sid", unique=True),
    Index("ix_session_records_user_id", "user_id"),
    # Serves the purge of expired records.
    Index("ix_session_records_expires_at", "expires_at"),
)
