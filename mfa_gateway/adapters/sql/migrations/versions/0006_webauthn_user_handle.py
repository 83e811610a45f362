"""Passkey sign-in: credentials found by the user handle an authenticator returns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

An index and nothing else: a passkey's assertion names its user by the random user handle stored with every
credential since 0004 (one handle per user, never the user name), and sign-in looks the credential up by handle and
id together. A database at this revision is still read correctly by a gateway that does not know the index.

Hand-written to match ``mfa_gateway.adapters.sql.schema`` exactly (a contract test checks there is no diff).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_webauthn_credentials_user_handle", "webauthn_credentials", ["user_handle"])


def downgrade() -> None:
    op.drop_index("ix_webauthn_credentials_user_handle", table_name="webauthn_credentials")
