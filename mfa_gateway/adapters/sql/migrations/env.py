"""Alembic environment: online mode only, on the connection ``SqlEnrollmentStore.migrate()`` hands over.

No alembic.ini and no logging configuration: the application owns logging, and the store owns the connection
(and, on PostgreSQL, the advisory lock that serialises replicas migrating at once).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from mfa_gateway.adapters.sql.schema import metadata


def run_migrations_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use SqlEnrollmentStore.migrate()")

_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("migrations run only through SqlEnrollmentStore.migrate(), which passes a connection")
run_migrations_online(_connection)
