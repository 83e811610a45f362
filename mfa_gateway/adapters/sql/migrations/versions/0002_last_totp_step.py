"""The last accepted TOTP time step, kept with the enrollment.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Replay marks lived only in shared state, so a Redis without persistence that restarted forgot them and accepted a
code used seconds before. ``enrollments.last_step`` keeps the newest step durably; existing rows start with none
(NULL), exactly as they would after a Redis restart today, and the next accepted code sets it.

Hand-written to match ``mfa_gateway.adapters.sql.schema`` exactly (a contract test checks there is no diff).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column with no default: an in-place ALTER TABLE ADD COLUMN on SQLite and PostgreSQL alike (no
    # table rebuild, which on SQLite would drop the table and cascade to the backup codes).
    op.add_column("enrollments", sa.Column("last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("enrollments", "last_step")
