"""Shared fixtures: real Redis and PostgreSQL servers for the whole session, a fresh database per test."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer, psql, running_postgres, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="mfa-redis-") as workdir, running_redis(Path(workdir)) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with tempfile.TemporaryDirectory(prefix="mfa-pg-") as workdir, running_postgres(Path(workdir)) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a database created for this test alone and dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    postgres_server.create_database(name)
    yield postgres_server.url_for(name)
    psql(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis; tests that use it get their own key prefix through the gateway factory."""
    return redis_server.url
