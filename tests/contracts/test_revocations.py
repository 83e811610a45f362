"""Contract of the revocation part of ``SharedState``: recorded, listed until they lapse, and fed to replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from mfa_gateway.core.model import Revocation, RevocationKind
from mfa_gateway.ports import SharedState

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


@contextlib.asynccontextmanager
async def subscribed(state: SharedState) -> AsyncIterator[asyncio.Queue[Revocation]]:
    queue: asyncio.Queue[Revocation] = asyncio.Queue()
    ready = asyncio.Event()

    async def consume() -> None:
        feed = state.revocation_feed()
        first = asyncio.ensure_future(anext(feed))
        await asyncio.sleep(0)  # let the subscription start before anyone publishes
        ready.set()
        queue.put_nowait(await first)
        async for item in feed:
            queue.put_nowait(item)

    task = asyncio.create_task(consume())
    await ready.wait()
    await asyncio.sleep(0.05)  # the Redis SUBSCRIBE round trip; bounded, not waiting on the code under test
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_feed_delivers_revocations_to_subscribers(state: SharedState) -> None:
    """Every subscriber receives each revocation announced after it subscribed."""
    async with subscribed(state) as first, subscribed(state) as second:
        await state.revoke(revocation("sid-9"))
        got = await asyncio.wait_for(first.get(), 5)
        also = await asyncio.wait_for(second.get(), 5)
    assert got == also == revocation("sid-9")


@pytest.mark.redis
async def test_feed_reaches_another_replica(redis_server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """A revocation made through one Redis client reaches the feed of another (another replica)."""
    from mfa_gateway.adapters.state.redis import RedisSharedState

    a = RedisSharedState(redis_server.url, prefix=prefix)
    b = RedisSharedState(redis_server.url, prefix=prefix)
    try:
        async with subscribed(b) as feed:
            await a.revoke(revocation("alice", RevocationKind.USER))
            assert (await asyncio.wait_for(feed.get(), 5)).subject == "alice"
        assert [r.subject for r in await b.revocations(T0)] == ["alice"]
    finally:
        await a.close()
        await b.close()
