"""Session records for the account page: one row per issued session, found by its sid or its public id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A new table and nothing else: a database at this revision is still read correctly by a gateway that does not know
the table (it never reads it).

Hand-written to match ``mfa_gateway.adapters.sql.schema`` exactly (a contract test checks there is no diff).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_records",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("sid", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("methods", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_session_records"),
    )
    op.create_index("ix_session_records_sid", "session_records", ["sid"], unique=True)
    op.create_index("ix_session_records_user_id", "session_records", ["user_id"])
    op.create_index("ix_session_records_expires_at", "session_records", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_session_records_expires_at", table_name="session_records")
    op.drop_index("ix_session_records_user_id", table_name="session_records")
    op.drop_index("ix_session_records_sid", table_name="session_records")
    op.drop_table("session_records")
