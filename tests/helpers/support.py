"""Helpers for tests of every kind: a bounded wait for what happens elsewhere, and config overrides laid over a base.

``eventually`` is for waiting on another process, a pub/sub delivery or a reconnection, where there is no event to
await; ``until_subscribed`` waits until a subscription exists, so that what is published next reaches it. Time seen
by the code under test is still injected (``FakeClock``); these waits are wall-clock bounds on real I/O, and when one
runs out the test fails naming what it waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
import redis.asyncio

from mfa_gateway.core.errors import DependencyUnavailable
from mfa_gateway.ports import SharedState

INTERVAL = 0.05

Subscribers = Callable[[], Awaitable[int]]
"""Counts the subscribers of one feed or channel, for ``until_subscribed``."""


class TimedOut(AssertionError):
    """A bounded wait ran out: what was awaited never happened."""


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    held = condition()
    return await held if isinstance(held, Awaitable) else held


def _give_up_after(deadline: float, within: float, awaited: str) -> None:
    if time.monotonic() >= deadline:
        raise TimedOut(f"gave up after {within:g} s waiting for {awaited}")


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], awaited: str, *, within: float, interval: float = INTERVAL
) -> None:
    """Return once ``condition()`` (a plain or an async function) is true, asking every ``interval`` seconds;
    ``TimedOut`` naming what was ``awaited`` once ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while not await _holds(condition):
        _give_up_after(deadline, within, awaited)
        await asyncio.sleep(interval)


def eventually_blocking(
    condition: Callable[[], bool], awaited: str, *, within: float, interval: float = INTERVAL
) -> None:
    """``eventually`` for code without an event loop (server start-up, synchronous tests)."""
    deadline = time.monotonic() + within
    while not condition():
        _give_up_after(deadline, within, awaited)
        time.sleep(interval)


def redis_subscribers(client: redis.asyncio.Redis, channel: str) -> Subscribers:
    """Counts the connections subscribed to ``channel`` on ``client``'s server (``PUBSUB NUMSUB``). One that counts
    has had its ``SUBSCRIBE`` processed, so a message published after that reaches it."""

    async def count() -> int:
        ((_, subscribed),) = await client.pubsub_numsub(channel)
        return int(subscribed)

    return count


async def until_subscribed(subscribers: Subscribers, at_least: int, awaited: str, *, within: float = 10.0) -> None:
    """Return once ``subscribers()`` counts ``at_least``; ``TimedOut`` naming what was ``awaited`` and the count
    last seen otherwise."""
    seen = 0

    async def enough() -> bool:
        nonlocal seen
        seen = await subscribers()
        return seen >= at_least

    try:
        await eventually(enough, awaited, within=within)
    except TimedOut as exc:
        raise TimedOut(f"{exc}: {seen} subscribed, {at_least} wanted") from None


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, one config section deep: a section given as a mapping in both merges
    key by key; every other value replaces what was there, a nested mapping inside a section included (an override
    of ``identity.upstream_login`` names the whole login, so nothing of the base's is left behind). Neither argument
    is changed."""
    merged = dict(base)
    for key, value in overrides.items():
        section = merged.get(key)
        merged[key] = {**section, **value} if isinstance(section, Mapping) and isinstance(value, Mapping) else value
    return merged


async def in_pieces(body: bytes, pieces: int, pause: float = 0.01) -> AsyncIterator[bytes]:
    """A chunked body in ``pieces`` chunks, ``pause`` seconds apart so that they arrive separately (the pause only
    keeps them apart on the wire; nothing waits on it)."""
    size = -(-len(body) // pieces)
    for start in range(0, len(body), size):
        if start:
            await asyncio.sleep(pause)
        yield body[start : start + size]


async def serves(state: SharedState, now: float) -> None:
    """``state`` answers and decides: a one-time claim wins once, a challenge put is taken back whole."""
    await state.ping()
    assert await state.claim_once("k", now, 60.0)
    assert not await state.claim_once("k", now + 1, 60.0)
    await state.put_challenge("c1", b"payload", now, 60.0)
    assert await state.take_challenge("c1", now + 1) == b"payload"


async def unavailable(state: SharedState) -> DependencyUnavailable:
    """What ``state`` raises when asked anything (it must be ``DependencyUnavailable``: a 503, fail closed); closed
    afterwards."""
    try:
        with pytest.raises(DependencyUnavailable) as refused:
            await state.ping()
    finally:
        await state.close()
    return refused.value
