"""The ledger's delivery operations at scale: a claim with 100k and 1M pending rows, settling 2,000 retries."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.backlog import postgres_backlog, sqlite_backlog
from bench.common import database
from sync.ledger import migrate
from sync.ledger.schema import events
from sync.ledger.store import Ledger, create_engine
from sync.model import Claim, Direction, Settlement

CLAIM_LIMIT = 2000  # what the Iterable sink asks for (two full bulk requests)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def claims(kind: str, pending: int, rounds: int = 40) -> dict[str, float]:
    """Claim ``CLAIM_LIMIT`` rows ``rounds`` times (each claim then settled as delivered); milliseconds.
    At most half the backlog is taken, so the last claim still sees more than half of it pending."""
    rounds = max(3, min(rounds, pending // CLAIM_LIMIT // 2))
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        if kind == "sqlite":
            sqlite_backlog(url.split(":///", 1)[1], pending, users=10_000)
        else:
            await postgres_backlog(url, pending, users=10_000)
        ledger = Ledger(engine)
        now = datetime.now(UTC)
        times = []
        try:
            for _ in range(rounds):
                claim = Claim(direction=Direction.OUTBOUND, owner="bench", limit=CLAIM_LIMIT, lease_seconds=120)
                started = time.perf_counter()
                rows = await ledger.claim(claim, now)
                times.append((time.perf_counter() - started) * 1000)
                assert len(rows) == CLAIM_LIMIT, len(rows)
                await ledger.settle(Settlement(delivered=tuple(r.id for r in rows)), now, owner="bench")
        finally:
            await engine.dispose()
    return {"p50_ms": statistics.median(times), "p99_ms": percentile(times, 0.99), "max_ms": max(times)}


async def settle_retries(kind: str, count: int = 2000) -> dict[str, float]:
    """Settling ``count`` retries: the ledger's one statement, and a baseline of one UPDATE per row."""
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        if kind == "sqlite":
            sqlite_backlog(url.split(":///", 1)[1], count * 3, users=600)
        else:
            await postgres_backlog(url, count * 3, users=600)
        ledger = Ledger(engine)
        now = datetime.now(UTC)
        try:
            claimed = await _claimed(ledger, now, count * 2)
            ours, theirs = claimed[:count], claimed[count:]
            started = time.perf_counter()
            later = now + timedelta(minutes=5)
            await ledger.settle(Settlement(retry=tuple((r.id, later, "HTTP 503 from Iterable") for r in ours)), now,
                                owner="bench")
            one_statement = time.perf_counter() - started
            started = time.perf_counter()
            await _settle_row_by_row(engine, [r.id for r in theirs], later, now)
            row_by_row = time.perf_counter() - started
        finally:
            await engine.dispose()
    return {"one_statement_ms": one_statement * 1000, "row_by_row_ms": row_by_row * 1000}


async def _claimed(ledger: Ledger, now: datetime, count: int) -> list[Any]:
    rows: list[Any] = []
    while len(rows) < count:  # claims in a row, as the worker makes them (the earlier ones are in flight)
        claim = Claim(direction=Direction.OUTBOUND, owner="bench", limit=count - len(rows), lease_seconds=600,
                      in_flight=frozenset(r.id for r in rows))
        more = await ledger.claim(claim, now)
        assert more, "a claim found nothing"
        rows += more
    return rows


async def _settle_row_by_row(engine: Any, ids: list[int], later: datetime, now: datetime) -> None:
    """How settle wrote retries before issue 13: one UPDATE statement per row, in one transaction."""
    mine = sa.and_(events.c.status == "pending", events.c.lease_owner == "bench")
    async with engine.begin() as conn:
        for row_id in ids:
            await conn.execute(events.update().where(events.c.id == row_id, mine).values(
                next_attempt_at=later, last_error="HTTP 503 from Iterable", attempts=events.c.attempts + 1,
                lease_owner=None, lease_expires_at=None, updated_at=now))
