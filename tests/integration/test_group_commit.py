"""Group commit: concurrent requests share transactions, and each still learns its own duplicates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.engine.intake import GroupCommit
from sync.errors import LedgerUnavailable
from sync.ledger.store import Ledger
from sync.model import Direction, NewEvent


def event(key: str) -> NewEvent:
    return NewEvent(direction=Direction.OUTBOUND, key=key, kind="track", payload={}, user_key="u")


async def test_concurrent_requests_share_commits_and_get_their_own_answers(ledger: Ledger) -> None:
    commits: list[int] = []
    real = ledger.record

    async def counting(rows: Any, now: datetime) -> set[str]:
        commits.append(len(rows))
        return await real(rows, now)

    ledger.record = counting  # type: ignore[method-assign]
    group = GroupCommit(ledger, lambda: datetime.now(UTC))
    await group.record([event("old")])
    requests = [[event(f"k{n}"), event("old")] for n in range(40)] + [[event("k3")]]
    answers = await asyncio.gather(*(group.record(rows) for rows in requests))
    assert len(commits) < 1 + len(requests)  # fewer transactions than requests
    assert sum(commits) == 1 + sum(len(r) for r in requests)
    for n, known in enumerate(answers[:40]):
        assert known == {(Direction.OUTBOUND, "old")}, n
    assert answers[40] == {(Direction.OUTBOUND, "k3")}  # k3 came first in an earlier request
    assert sum((await ledger.stats()).counts.values()) == 41


async def test_a_failed_commit_fails_every_request_in_it(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    committing, gate = asyncio.Event(), asyncio.Event()

    async def failing(rows: Any, now: datetime) -> set[str]:
        committing.set()
        await gate.wait()
        raise LedgerUnavailable("disk full")

    monkeypatch.setattr(ledger, "record", failing)
    group = GroupCommit(ledger, lambda: datetime.now(UTC))
    tasks = [asyncio.create_task(group.record([event(f"f{n}")])) for n in range(5)]
    await committing.wait()  # the first commit is under way; the other requests wait for the next one
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, LedgerUnavailable) for r in results)
