"""Shared fixtures: real Redis and PostgreSQL servers for the whole session, a fresh database per test, an injected
clock. And each test's kind as a marker, from its folder (``-m unit``, ``-m "not system"``; see pyproject.toml)."""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gateway import FakeClock
from tests.helpers.servers import PostgresServer, RedisServer, psql, running_postgres, running_redis

KINDS = {
    "unit": "unit",
    "contracts": "contract",
    "integration": "integration",
    "system": "system",
    "deploy": "deploy",
    "docs": "docs",
}
"""Each folder of tests/ and the marker its tests get: every test lives in one of them, so every test has a kind."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folder's kind; a test outside those folders is refused, not left without a kind."""
    tests = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(tests).parts[0]
        if folder not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(KINDS)}}}/")
        item.add_marker(KINDS[folder])


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


@pytest.fixture
def clock() -> FakeClock:
    """Injected time for the code under test: a test moves it forward instead of sleeping."""
    return FakeClock()


@pytest.fixture(autouse=True)
def no_secret_reaches_a_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: no log record of the whole run holds a secret value the gateway loaded (keyrings, signing
    keys, passwords, tokens), checked on the raw records, before any redaction."""
    yield
    from mfa_gateway.logs import registered_secrets

    caplog: pytest.LogCaptureFixture | None = request.node.funcargs.get("caplog")  # type: ignore[attr-defined]
    handler_records = []
    if caplog is not None:
        handler_records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    values = registered_secrets()
    for record in handler_records + _LOG_TAP.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        leaked = [value[:6] + "…" for value in values if value in text]
        assert not leaked, f"a log record of {record.name} holds a loaded secret ({leaked})"
    _LOG_TAP.records.clear()


class _Tap(logging.Handler):
    """Sees every record of the run (whatever the test's own capture does), for the leak check above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_LOG_TAP = _Tap()
logging.getLogger().addHandler(_LOG_TAP)
logging.getLogger().setLevel(logging.INFO)  # info and up reach the tap (access events included)


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    """After every test: the root logger as the run set it up. A command run in-process (``cli.main``) configures
    logging for a terminal, replacing the root's handlers and raising its level: without this, later tests would
    lose the leak tap above and the INFO records they count."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
