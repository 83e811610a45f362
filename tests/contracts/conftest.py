"""Fixtures shared by the port contract suites: every implementation of a port gets the same tests.

Store suites get ``database``: an empty SQLite file, or a freshly created PostgreSQL database (``CREATE DATABASE
t_<random>`` over an admin connection, dropped ``WITH (FORCE)`` afterwards); "two replicas" are two store instances,
each with its own engine and connection pool, on the same database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from mfa_gateway.adapters.sql.migrate import upgrade
from mfa_gateway.adapters.sql.store import SqlEnrollmentStore
from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.ports import SharedState
from tests.helpers.servers import PostgresServer, RedisServer


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def state(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[SharedState]:
    impl: SharedState
    if request.param == "memory":
        impl = MemorySharedState()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        impl = RedisSharedState(server.url, prefix=prefix)
    try:
        yield impl
    finally:
        await impl.close()


@dataclass
class Database:
    """One empty database for one test; ``store()`` opens another replica on it (closed at teardown)."""

    url: str
    stores: list[SqlEnrollmentStore] = field(default_factory=list)

    def store(self) -> SqlEnrollmentStore:
        store = SqlEnrollmentStore(self.url)
        self.stores.append(store)
        return store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'mfa.db'}")
        try:
            yield db
        finally:
            for store in db.stores:
                await store.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex}"
    admin = create_async_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = Database(make_url(server.url).set(database=name).render_as_string(hide_password=False))
        try:
            yield db
        finally:
            for store in db.stores:
                await store.close()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def store(database: Database) -> SqlEnrollmentStore:
    store = database.store()
    await store.migrate()
    return store


async def store_at_revision(database: Database, revision: str, now: float) -> SqlEnrollmentStore:
    """A store on ``database`` as an older release left it: migrated to ``revision`` only, with alice's active
    enrollment in it (SHA1, 6 digits, 30 s), for a later revision's upgrade test to migrate."""
    store = database.store()
    async with store.engine.begin() as conn:
        await conn.run_sync(upgrade, revision)
        await conn.execute(
            text(
                "INSERT INTO enrollments (user_id, secret_ciphertext, key_id, algorithm, digits, period, status,"
                " created_at, activated_at, updated_at) VALUES ('alice', :ct, 'k1', 'SHA1', 6, 30, 'active',"
                " :now, :now, :now)"
            ),
            {"ct": b"\x01ct", "now": now},
        )
    return store
