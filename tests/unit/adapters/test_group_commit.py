"""GroupCommit: batches in order, each caller answered with its own outcome, a cancelled caller's item kept."""

from __future__ import annotations

import asyncio

import pytest

from mfa_gateway.adapters.group_commit import GroupCommit


class Ledger:
    """A commit that keeps every batch it was given; "bad" fails alone, "boom" fails its whole batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.kept: list[str] = []

    async def commit(self, items: list[str]) -> list[str | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(0)  # a commit takes a turn of the loop, as a hand-off to a thread does
        if "boom" in items:
            raise OSError("the database went away")
        self.kept += [item for item in items if item != "bad"]
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


async def test_items_asked_for_during_a_commit_go_together_in_the_next_one_in_order() -> None:
    ledger = Ledger()
    group = GroupCommit(ledger.commit, limit=3, name="test")
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)  # "a" alone is being committed
    rest = [asyncio.create_task(group.submit(item)) for item in "bcdefgh"]
    assert await asyncio.gather(first, *rest) == list("ABCDEFGH")
    assert ledger.batches == [["a"], ["b", "c", "d"], ["e", "f", "g"], ["h"]]


async def test_an_item_that_fails_alone_fails_only_its_caller() -> None:
    ledger = Ledger()
    group = GroupCommit(ledger.commit, limit=10, name="test")
    outcomes = await asyncio.gather(*(group.submit(item) for item in ("x", "bad", "y")), return_exceptions=True)
    assert outcomes[0] == "X" and isinstance(outcomes[1], ValueError) and outcomes[2] == "Y"
    assert ledger.kept == ["x", "y"]


async def test_a_batch_that_fails_whole_fails_each_caller_and_the_next_batch_goes_on() -> None:
    ledger = Ledger()
    group = GroupCommit(ledger.commit, limit=10, name="test")
    outcomes = await asyncio.gather(*(group.submit(item) for item in ("p", "boom")), return_exceptions=True)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert await group.submit("q") == "Q" and ledger.kept == ["q"]


async def test_a_cancelled_caller_still_has_its_item_committed() -> None:
    ledger = Ledger()
    group = GroupCommit(ledger.commit, limit=10, name="test")
    cancelled = asyncio.create_task(group.submit("late"))
    await asyncio.sleep(0)  # queued, its commit under way
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await group.flush()
    assert ledger.kept == ["late"]
