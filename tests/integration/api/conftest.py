"""A real gateway served on 127.0.0.1 for API tests, with injected time and a choice of backends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer

from mfa_gateway.adapters.audit import MemoryAudit
from mfa_gateway.config import Settings
from mfa_gateway.runtime import Runtime, build_runtime
from mfa_gateway.web.app import create_app
from tests.helpers.gateway import FakeClock, add_user, make_runtime, make_settings
from tests.helpers.support import merge_overrides

PASSWORD = "correct horse battery"


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    runtime: Runtime
    audit: MemoryAudit | None  # None when events go to the production sinks (``audit_sinks``): read those instead
    clock: FakeClock
    settings: Settings

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self.client.post(self.prefix + path, json=body if body is not None else {}, **kwargs)

    async def login(self, username: str = "alice", password: str = PASSWORD, **extra: Any) -> Any:
        return await self.post("/api/login", {"username": username, "password": password, **extra})

    async def enable(self) -> dict[str, Any]:
        response = await self.post("/api/mfa/enable")
        assert response.status == 200, await response.text()
        data: dict[str, Any] = (await response.json())["data"]
        return data


GatewayFactory = Callable[..., Awaitable[Gateway]]


BACKENDS = ["memory+sqlite", "redis+postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config overrides selecting the state and store backends: every API test runs against both pairs."""
    if request.param == "memory+sqlite":
        return {}
    prefix = f"t{secrets.token_hex(4)}:"
    return {
        "state": {"backend": "redis", "url": request.getfixturevalue("redis_url"), "key_prefix": prefix},
        "store": {"url": request.getfixturevalue("postgres_url")},
    }


@pytest.fixture
async def make_gateway(
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    backend: dict[str, Any],
) -> AsyncIterator[GatewayFactory]:
    clock = FakeClock()

    async def factory(
        overrides: dict[str, Any] | None = None, *, users: bool = True, audit_sinks: bool = False
    ) -> Gateway:
        """A gateway on a runtime of its own. The gateways of one test share ``tmp_path`` (users file, SQLite
        database, audit log) and the backend, as replicas of one deployment do.

        ``audit_sinks``: events go to the production sinks (``audit.path`` and the database), and ``audit`` is None,
        so that no assertion can read an empty memory sink and pass without looking.
        """
        settings = make_settings(tmp_path, merge_overrides(backend, overrides or {}))
        if users and settings.identity.source == "builtin":
            add_user(settings, "alice", PASSWORD, "alice@example.test")
            add_user(settings, "bob", PASSWORD)
        audit: MemoryAudit | None
        if audit_sinks:
            runtime, audit = build_runtime(settings, clock=clock), None
        else:
            runtime, audit = make_runtime(settings, clock)
        server = await aiohttp_server(create_app(runtime))  # bound to port 0: the port is the one it holds
        # The gateway's cookies are Secure; the test client treats its loopback origin as secure, like a browser
        # does for https, rather than the gateway relaxing Secure for tests.
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[f"http://127.0.0.1:{server.port}"])
        client = await aiohttp_client(server, cookie_jar=jar)
        return Gateway(client, runtime, audit, clock, settings)

    yield factory


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway()


@pytest.fixture
async def alice(gateway: Gateway) -> Gateway:
    """The gateway with alice signed in (first factor) and her session cookie in the client's jar."""
    response = await gateway.login()
    assert response.status == 200, await response.text()
    return gateway
