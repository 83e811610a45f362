"""Fixtures shared by the port contract suites: every implementation of a port gets the same tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.ports import SharedState
from tests.helpers.servers import RedisServer


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
