"""Shared fixtures: real Redis and PostgreSQL servers for the whole session, a fresh database per test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer, running_postgres, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="mfa-redis-") as workdir, running_redis(Path(workdir)) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with tempfile.TemporaryDirectory(prefix="mfa-pg-") as workdir, running_postgres(Path(workdir)) as server:
        yield server
