"""Remembered devices ("remember this device"): grants found by the hash of their cookie's token.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A new table and nothing else: a database at this revision is still read correctly by a gateway that does not know
the table (it never reads it).

Hand-written to match ``mfa_gateway.adapters.sql.schema`` exactly (a contract test checks there is no diff).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_grants",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("factor", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_grants"),
    )
    op.create_index("ix_device_grants_token_hash", "device_grants", ["token_hash"], unique=True)
    op.create_index("ix_device_grants_user_id", "device_grants", ["user_id"])
    op.create_index("ix_device_grants_expires_at", "device_grants", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_device_grants_expires_at", table_name="device_grants")
    op.drop_index("ix_device_grants_user_id", table_name="device_grants")
    op.drop_index("ix_device_grants_token_hash", table_name="device_grants")
    op.drop_table("device_grants")
