"""Claims whose cost does not grow with the backlog (issue 13): every statement a claim and a settlement run
is explained on a large ledger, and no plan may read the events table by scanning it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from bench.backlog import postgres_backlog, sqlite_backlog
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.model import Claim, Direction, Settlement
from tests.conftest import _reset_pg

ROWS = {"sqlite": 20_000, "postgresql": 80_000}  # PostgreSQL's planner rightly scans small tables


async def explained(ledger_url: str) -> list[tuple[str, str]]:
    """(statement, plan) for each statement of two claims and a settlement on a big backlog."""
    kind = "postgresql" if ledger_url.startswith("postgresql") else "sqlite"
    if kind == "postgresql":
        await _reset_pg(ledger_url)
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    if kind == "sqlite":
        sqlite_backlog(ledger_url.split(":///", 1)[1], ROWS[kind], users=5_000)
    else:
        await postgres_backlog(ledger_url, ROWS[kind], users=5_000)
    async with engine.begin() as conn:  # a ledger in service: the older half delivered, kept for retention
        await conn.execute(sa.text(f"UPDATE events SET status = 'delivered' WHERE id <= {ROWS[kind] // 2}"))
        await conn.execute(sa.text("ANALYZE"))
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "events" in statement and not many and not statement.lstrip().upper().startswith(("EXPLAIN", "SELECT PG_")):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    ledger, now = Ledger(engine), datetime.now(UTC)
    try:
        first = await ledger.claim(Claim(direction=Direction.OUTBOUND, owner="w", limit=2000, lease_seconds=60), now)
        second = await ledger.claim(Claim(direction=Direction.OUTBOUND, owner="w", limit=2000, lease_seconds=60,
                                          in_flight=frozenset(r.id for r in first)), now)
        assert len(first) == 2000 and second
        await ledger.settle(Settlement(delivered=tuple(r.id for r in first), released=tuple(r.id for r in second)),
                            now, owner="w")
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        plans = []
        async with engine.connect() as conn:
            for statement, parameters in seen:
                prefix = "EXPLAIN " if kind == "postgresql" else "EXPLAIN QUERY PLAN "
                rows = (await conn.exec_driver_sql(prefix + statement, parameters)).all()
                plans.append((statement, "\n".join(str(r[-1]) for r in rows)))
            await conn.rollback()
    finally:
        await engine.dispose()
    return plans


async def test_no_claim_or_settle_statement_scans_the_events_table(ledger_url: str) -> None:
    plans = await explained(ledger_url)
    assert len(plans) >= 6  # two claims (due rows, queues, lease) and the settlement's updates
    for statement, plan in plans:
        if ledger_url.startswith("postgresql"):
            assert "Seq Scan on events" not in plan, f"{statement}\n{plan}"
        else:
            scans = [line for line in plan.splitlines() if re.match(r"\s*SCAN events\b", line)]
            assert not scans, f"{statement}\n{plan}"
    text = "\n".join(plan for _, plan in plans)
    assert "ix_events_due" in text  # the due rows
    assert "ix_events_user_pending" in text or "ix_events_person" in text  # the people's queues


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_the_plan_check_catches_a_scan(ledger_url: str) -> None:
    """The check itself can fail: without the due index the first claim's query scans the table."""
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP INDEX ix_events_due"))
    await engine.dispose()
    with pytest.raises(AssertionError):
        await test_no_claim_or_settle_statement_scans_the_events_table(ledger_url)
