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


@pytest.mark.postgres
async def test_requests_waiting_out_a_locked_ledger_get_their_503_after_one_lock_timeout(pg_url: str) -> None:
    """A bug hunt: while a stalled session held the table, a failed shared commit was tried again request by
    request, each waiting the whole lock timeout behind the commit lock: requests waited 28 s for a 503 (or
    for their 200) where the lock timeout was 5 s, and clients gave up first."""
    import time

    import asyncpg

    from sync.ledger.store import create_engine
    from sync.ledger.timeouts import DatabaseTimeouts
    from tests.conftest import _reset_pg

    await _reset_pg(pg_url)
    ledger = Ledger(create_engine(pg_url, DatabaseTimeouts(lock_seconds=1.0)))
    stall = await asyncpg.connect(pg_url)
    try:
        group = GroupCommit(ledger, lambda: datetime.now(UTC))
        await stall.execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")

        async def one(n: int) -> float:
            await asyncio.sleep(n * 0.15)  # requests keep arriving while the lock is held
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable) as raised:
                await group.record([event(f"l{n}")])
            assert raised.value.outage
            return time.monotonic() - started

        waited = await asyncio.gather(*(one(n) for n in range(12)))
        assert max(waited) < 2.5, waited  # about one lock timeout each, never several
    finally:
        await stall.execute("ROLLBACK")
        await stall.close()
        await ledger.close()
    assert await ledger_after(pg_url)


async def ledger_after(url: str) -> bool:
    """Once the lock is gone, the same requests commit."""
    from sync.ledger.store import create_engine

    ledger = Ledger(create_engine(url))
    try:
        return await GroupCommit(ledger, lambda: datetime.now(UTC)).record([event("l0")]) == set()
    finally:
        await ledger.close()


@pytest.mark.postgres
async def test_a_commit_the_database_refuses_for_its_values_is_not_an_outage(pg_url: str) -> None:
    """Only a refusal for the values tries the batch's requests one by one (an outage fails them at once).
    (PostgreSQL refuses a NUL in text; SQLite stores it.)"""
    from sync.ledger.store import create_engine
    from tests.conftest import _reset_pg

    await _reset_pg(pg_url)
    ledger = Ledger(create_engine(pg_url))
    try:
        with pytest.raises(LedgerUnavailable) as raised:
            await ledger.record([NewEvent(direction=Direction.OUTBOUND, key="k\x00", kind="track", payload={},
                                          user_key="u")], datetime.now(UTC))
        assert raised.value.outage is False
        group = GroupCommit(ledger, lambda: datetime.now(UTC))
        bad, good = await asyncio.gather(group.record([event("k\x00")]), group.record([event("fine")]),
                                         return_exceptions=True)
        assert isinstance(bad, LedgerUnavailable) and good == set()  # the good request still commits
    finally:
        await ledger.close()
