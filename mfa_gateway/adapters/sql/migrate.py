"""Schema migrations, with alembic loaded only when one must run.

A started gateway usually finds its database at the revision it ships: reading ``alembic_version`` with
SQLAlchemy says so, and alembic (with mako, some 10 MiB of a worker's memory) is never imported. Only a database
that is new, or behind, or at a revision this package does not know, goes to alembic's ``upgrade``, which creates,
upgrades or refuses it exactly as before. ``HEAD_REVISION`` is the newest file under ``migrations/versions``; a
test reads that folder with alembic and keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD_REVISION = "0007"
"""The revision the newest migration under ``migrations/versions`` creates."""

VERSION_TABLE = "alembic_version"


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, as alembic recorded it; None for a database alembic never touched (or one
    on several branches, which this package never creates)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def upgrade_to_head(connection: Connection) -> None:
    """Bring the database to ``HEAD_REVISION``; alembic runs only if it is not there already."""
    if current_revision(connection) != HEAD_REVISION:
        upgrade(connection)


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Alembic ``upgrade`` (to the newest revision unless told) on a connection we own: no alembic.ini, no logging
    configuration. Tests pass an older ``revision`` to build a database as an earlier release left it."""
    from alembic import command  # only here: see the module docstring
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)
