"""Initial schema: enrollments, backup codes, audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Hand-written to match ``mfa_gateway.adapters.sql.schema`` exactly (a contract test checks there is no diff).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrollments",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("digits", sa.Integer(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("activated_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'active')", name="ck_enrollments_status"),
        sa.PrimaryKeyConstraint("user_id", name="pk_enrollments"),
    )
    op.create_table(
        "backup_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("lookup", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["enrollments.user_id"],
            name="fk_backup_codes_user_id_enrollments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_backup_codes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_backup_codes_user_id_lookup", "backup_codes", ["user_id", "lookup"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("client_ip", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_user_id_at", "audit_events", ["user_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_user_id_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_backup_codes_user_id_lookup", table_name="backup_codes")
    op.drop_table("backup_codes")
    op.drop_table("enrollments")
