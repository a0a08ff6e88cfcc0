"""Retrying rows: the one rule ``ledger retry`` and the console share (SPEC sections 7, 10 and 12).

- A ``dead`` row is sent again as it was decided (its frozen call), with a fresh retry window; with
  ``remap`` it is decided again under the current mapping instead.
- A ``rejected`` or ``skipped`` row never had a call to send: retrying it means deciding it again under the
  current mapping (``ledger retry --remap``). It becomes pending with its new call, or stays rejected or
  skipped with the reason the current mapping gives.
- A forgotten person's rows and held rows are never retried; a re-mapping that could duplicate is refused
  (``sync.engine.remap``).

Each retried row's history notes what the operator did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from sync.config import Config
from sync.engine import explain, remap
from sync.ledger import decisions, history
from sync.ledger.browse import RETRYABLE, RowFilter
from sync.ledger.schema import events
from sync.ledger.store import NOT_FORGOTTEN, Ledger, _row
from sync.model import Direction, Remapped, Row, Status

PAGE = 500


@dataclass(slots=True)
class Outcome:
    """What a retry did: rows requeued as recorded, rows decided again (per new status), refusals."""

    requeued: int = 0
    redecided: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.requeued + sum(self.redecided.values())

    def describe(self) -> str:
        """One sentence for the operator, e.g. "Requeued 1 row as recorded; decided 2 rows again under the
        current mapping: 1 pending, 1 skipped"."""
        parts = [f"requeued {_rows(self.requeued)} as recorded"] if self.requeued else []
        if self.redecided:
            tally = ", ".join(f"{n:,} {s}" for s, n in sorted(self.redecided.items()))
            parts.append(f"decided {_rows(sum(self.redecided.values()))} again under the current mapping: {tally}")
        if self.refused:
            parts.append(f"refused {_rows(len(self.refused))}")
        text = "; ".join(parts) or "nothing to retry"
        return text[0].upper() + text[1:]


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


async def retry(ledger: Ledger, config: Config, digest: str, rows: AsyncIterator[list[Row]], now: datetime, *,
                remap_all: bool = False, force: bool = False) -> Outcome:
    """Retry every row ``rows`` yields (pages of rows) under the rule above."""
    outcome = Outcome()
    async for page in rows:
        plain = [r.id for r in page if decisions.requeueable(r.status, r.user_key) and not remap_all]
        outcome.requeued += await _requeue(ledger, plain, now)
        changes = []
        for row in page:
            if row.status in RETRYABLE and (row.status is not Status.DEAD or remap_all):
                decided = explain.decide(config, row.payload, row.direction.value, digest, now)
                change = remap.remap(row, decided, force=force)
                if isinstance(change, str):
                    outcome.refused.append(change)
                else:
                    changes.append(change)
        await _redecide(ledger, changes, digest, now, outcome)
    return outcome


async def _requeue(ledger: Ledger, ids: Sequence[int], now: datetime) -> int:
    if not ids:
        return 0
    stmt = events.update().where(events.c.id.in_(list(ids)), events.c.status == decisions.REQUEUED, NOT_FORGOTTEN)
    stmt = stmt.values(**decisions.requeued(now), reason_class=None).returning(events.c.id)
    async with ledger._tx() as conn:
        done = [r.id for r in (await conn.execute(stmt)).all()]
        await history.note(conn, done, "requeued", "retried by an operator: sent again as recorded", now)
    return len(done)


async def _redecide(ledger: Ledger, changes: Sequence[Remapped], digest: str, now: datetime,
                    outcome: Outcome) -> None:
    if not changes:
        return
    async with ledger._tx() as conn:
        for change in changes:
            stmt = events.update().where(events.c.id == change.id, events.c.status == change.was, NOT_FORGOTTEN)
            done = (await conn.execute(stmt.values(
                status=change.status, mapped=change.mapped, mapping_digest=change.mapping_digest,
                reason=change.reason, reason_class=history.reason_class(change.reason) if change.reason else None,
                next_attempt_at=now, retry_from=now, lease_owner=None, lease_expires_at=None,
                updated_at=now))).rowcount
            if done:
                outcome.redecided[change.status.value] = outcome.redecided.get(change.status.value, 0) + 1
                became = change.status.value + (f": {change.reason}" if change.reason else "")
                await history.note(conn, [change.id], "redecided",
                                   f"was {change.was.value}; decided again under mapping {digest[:12]}: {became}",
                                   now)


async def not_taken(ledger: Ledger, ids: Sequence[int], direction: Direction | None = None) -> list[str]:
    """Why each of ``ids`` that ``matching`` leaves out is left out, one line each, in id order: not in the
    ledger, another direction, a status no retry takes, or forgotten (no person's data is named)."""
    query = sa.select(events.c.id, events.c.direction, events.c.status, NOT_FORGOTTEN.label("kept")).where(
        events.c.id.in_(list(ids)))
    async with ledger._tx() as conn:
        found = {r.id: r for r in (await conn.execute(query)).all()}
    why = []
    for row_id in sorted(set(ids)):
        row = found.get(row_id)
        if row is None:
            why.append(f"#{row_id}: not in the ledger (purged, or never recorded)")
        elif direction is not None and row.direction != direction:
            why.append(f"#{row_id}: a row of the {Direction(row.direction).value} direction, not {direction.value}")
        elif Status(row.status) not in RETRYABLE:
            why.append(f"#{row_id}: {Status(row.status).value}; only dead, rejected and skipped rows are requeued")
        elif not row.kept:
            why.append(f"#{row_id}: forgotten (its person's data is gone); it cannot be sent again")
    return why


async def matching(ledger: Ledger, wanted: RowFilter | None = None, ids: Sequence[int] = (), *,
                   direction: Direction | None = None) -> AsyncIterator[list[Row]]:
    """Pages of the retryable rows ``wanted`` selects (or of ``ids``), in id order; forgotten rows left out."""
    after = 0
    while True:
        query = sa.select(events).where(events.c.id > after, events.c.status.in_(RETRYABLE), NOT_FORGOTTEN)
        if wanted is not None:
            query = query.where(*wanted.where())
        if ids:
            query = query.where(events.c.id.in_(list(ids)))
        if direction:
            query = query.where(events.c.direction == direction)
        async with ledger._tx() as conn:
            page = [_row(r) for r in (await conn.execute(query.order_by(events.c.id).limit(PAGE))).mappings()]
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = page[-1].id
