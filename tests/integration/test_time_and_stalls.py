"""SPEC section 4, "Time and stalls", on both databases (issue 19): leases judged by the database, never by a
process's clock; a stalled transaction or a slow ledger never hangs or kills the daemon; rows re-checked at send."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from sync.delivery import Results, Worker
from sync.ledger import Claim, Direction, Ledger, NewEvent, Row, Status
from sync.ledger.schema import events
from sync.ledger.store import create_engine
from sync.metrics import Metrics
from sync.scheduler import Jobs
from tests.support import make_config, wait_for

OUT = Direction.OUTBOUND


def event(key: str, user: str = "u1") -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="track", payload={"key": key}, user_key=user)


def claim(owner: str, limit: int = 10) -> Claim:
    return Claim(direction=OUT, owner=owner, limit=limit, lease_seconds=120)


class Gate:
    """A sink that holds every round until the test opens it; records what it was given."""

    direction = OUT
    batch_limit = 100

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def deliver(self, rows: Sequence[Row]) -> Results:
        self.sent += [row.key for row in rows]
        self.entered.set()
        await self.open.wait()
        return Results(delivered=[row.id for row in rows])


class SteppedClock:
    def __init__(self) -> None:
        self.step = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.step


async def test_a_replica_whose_clock_runs_150_s_ahead_takes_no_row_another_holds(ledger: Ledger,
                                                                                 ledger_url: str) -> None:
    """Issue 19 item 1: with replica B's clock 150 s ahead of a 120 s lease, B re-sent A's rows."""
    await ledger.record([event("a", "u1"), event("b", "u2")], datetime.now(UTC))
    held = await ledger.claim(claim("replica-a"), datetime.now(UTC))
    assert [r.key for r in held] == ["a", "b"]
    # on PostgreSQL a second engine is another replica; SQLite has one process, so B is a sibling owner in it
    other = Ledger(create_engine(ledger_url)) if ledger.is_postgres else ledger
    try:
        ahead = datetime.now(UTC) + timedelta(seconds=150)
        assert await other.claim(claim("replica-b"), ahead) == []
        assert await other.reap_expired(ahead) == 0
    finally:
        if other is not ledger:
            await other.close()


async def test_a_clock_step_does_not_let_a_process_reap_its_own_in_flight_lease(ledger: Ledger,
                                                                                ledger_url: str) -> None:
    """Issue 19 item 1: a +200 s clock step during a long Iterable request let the process's own reaper take the
    in-flight lease back, and the event was sent twice."""
    await ledger.record([event("a")], datetime.now(UTC))
    clock, sink = SteppedClock(), Gate()
    worker = Worker(ledger, sink, Metrics(), owner="serve:outbound", max_retry_hours=72, lease_seconds=120,
                    clock=clock, idle_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(sink.entered.wait(), 10)
        clock.step = timedelta(seconds=200)
        jobs = Jobs(ledger, Metrics(), make_config(ledger_url=ledger_url), None, clock=clock)
        assert await jobs.reap_leases() == 0
        assert await ledger.claim(claim("serve:inbound-sibling"), clock()) == []
        sink.open.set()
        await wait_for(lambda: _status(ledger, "a", Status.DELIVERED))
    finally:
        sink.open.set()
        worker.stop()
        await task
    assert sink.sent == ["a"]


async def test_a_lease_left_by_a_process_that_died_returns_to_the_pool(ledger: Ledger, ledger_url: str) -> None:
    """The other side of item 1: a dead process's lease still ends (by the database's clock on PostgreSQL)."""
    await ledger.record([event("a")], datetime.now(UTC))
    dead = Ledger(create_engine(ledger_url))
    await dead.claim(Claim(direction=OUT, owner="died", limit=10, lease_seconds=1), datetime.now(UTC))
    await dead.close()
    await wait_for(lambda: _reaped(ledger), within=10, interval=0.2)
    assert [r.key for r in await ledger.claim(claim("alive"), datetime.now(UTC))] == ["a"]


async def _reaped(ledger: Ledger) -> bool:
    return await ledger.reap_expired(datetime.now(UTC)) == 1


async def _status(ledger: Ledger, key: str, status: Status) -> bool:
    row = await ledger.get(OUT, key)
    return row is not None and row.status is status


async def _lease_of(ledger: Ledger, key: str) -> str | None:
    async with ledger.engine.connect() as conn:
        return await conn.scalar(sa.select(events.c.lease_owner).where(events.c.key == key))
