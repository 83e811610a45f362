"""Contract of the revocation part of ``SharedState``: recorded, listed until they lapse, and fed to replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from mfa_gateway.adapters.state.memory import MemorySharedState
from mfa_gateway.adapters.state.redis import RedisSharedState
from mfa_gateway.core.model import Revocation, RevocationKind
from mfa_gateway.ports import SharedState
from tests.helpers.servers import RedisServer
from tests.helpers.support import Subscribers, redis_subscribers, until_subscribed

T0 = 1_700_000_000.0


def revocation(subject: str = "sid-1", kind: RevocationKind = RevocationKind.SESSION, until: float = T0 + 600):
    return Revocation(kind=kind, subject=subject, at=T0, until=until)


async def test_revocations_are_listed_until_they_lapse(state: SharedState) -> None:
    """A revocation is in the list until its ``until``; after that it is forgotten."""
    await state.revoke(revocation("sid-1"))
    await state.revoke(revocation("alice", RevocationKind.USER, until=T0 + 60))
    assert {r.subject for r in await state.revocations(T0 + 1)} == {"sid-1", "alice"}
    assert [r.subject for r in await state.revocations(T0 + 61)] == ["sid-1"]
    assert await state.revocations(T0 + 601) == []


async def test_revoking_again_replaces_the_entry(state: SharedState) -> None:
    """A user revoked twice keeps one entry, the newest."""
    await state.revoke(revocation("alice", RevocationKind.USER))
    newer = Revocation(RevocationKind.USER, "alice", T0 + 5, T0 + 900)
    await state.revoke(newer)
    assert await state.revocations(T0 + 10) == [newer]


@pytest.fixture
async def subscribers(state: SharedState, request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Subscribers]:
    """Counts the revocation feeds subscribed on ``state``: on Redis the subscribers of its channel ``{prefix}rev``;
    in memory the feeds' queues (the port has no such count, so the reference implementation is looked into)."""
    if isinstance(state, MemorySharedState):
        memory = state

        async def feeds() -> int:
            return len(memory._feeds)

        yield feeds
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with redis.asyncio.Redis.from_url(server.url) as admin:
        yield redis_subscribers(admin, prefix + "rev")


@contextlib.asynccontextmanager
async def subscribed(state: SharedState, subscribers: Subscribers) -> AsyncIterator[asyncio.Queue[Revocation]]:
    """What ``state``'s revocation feed delivers, from the moment ``subscribers`` counts it until the block ends."""
    queue: asyncio.Queue[Revocation] = asyncio.Queue()

    async def consume() -> None:
        async for item in state.revocation_feed():
            queue.put_nowait(item)

    before = await subscribers()
    task = asyncio.create_task(consume())
    try:
        await until_subscribed(subscribers, before + 1, "the revocation feed to subscribe")
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_feed_delivers_revocations_to_subscribers(state: SharedState, subscribers: Subscribers) -> None:
    """Every subscriber receives each revocation announced after it subscribed."""
    async with subscribed(state, subscribers) as first, subscribed(state, subscribers) as second:
        await state.revoke(revocation("sid-9"))
        got = await asyncio.wait_for(first.get(), 5)
        also = await asyncio.wait_for(second.get(), 5)
    assert got == also == revocation("sid-9")


@pytest.mark.redis
async def test_feed_reaches_another_replica(redis_server: RedisServer, prefix: str) -> None:
    """A revocation made through one Redis client reaches the feed of another (another replica)."""
    a = RedisSharedState(redis_server.url, prefix=prefix)
    b = RedisSharedState(redis_server.url, prefix=prefix)
    try:
        async with (
            redis.asyncio.Redis.from_url(redis_server.url) as admin,
            subscribed(b, redis_subscribers(admin, prefix + "rev")) as feed,
        ):
            await a.revoke(revocation("alice", RevocationKind.USER))
            assert (await asyncio.wait_for(feed.get(), 5)).subject == "alice"
        assert [r.subject for r in await b.revocations(T0)] == ["alice"]
    finally:
        await a.close()
        await b.close()
