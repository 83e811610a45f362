"""Pending enrollments that no code can complete are removed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Release 0.1.0 accepted a ``totp.period`` of up to 300 s, but codes can only be checked with periods of 15-120 s:
with a longer period, ``api/mfa/enable`` saved a pending enrollment and then failed. Such a row can never be
activated, and loading it now fails validation, so the user could neither finish nor restart. Removing it (and its
backup codes) returns the user to "not enrolled": the next enrollment starts afresh. Active enrollments are never
touched; none can hold such a period.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNUSABLE = "status = 'pending' AND (period < 15 OR period > 120)"


def upgrade() -> None:
    # Backup codes first: SQLite enforces the cascade only where foreign keys are switched on.
    op.execute(f"DELETE FROM backup_codes WHERE user_id IN (SELECT user_id FROM enrollments WHERE {UNUSABLE})")  # noqa: S608 (a constant)
    op.execute(f"DELETE FROM enrollments WHERE {UNUSABLE}")  # noqa: S608 (a constant)


def downgrade() -> None:
    """Nothing to restore: the removed rows could never be used."""
