"""Ledger reads and writes for replays (SPEC section 15): which delivered rows a replay selects, in id
pages, and the history of each replay. A replay never adds or changes an event row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from sync import people
from sync.ledger.schema import events, identities, replays
from sync.ledger.store import NOT_FORGOTTEN, Ledger, _row
from sync.model import Direction, Row, Status


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFilter:
    """Delivered rows received in ``[since, until)``, narrowed by direction, person and event name."""

    since: datetime
    until: datetime | None = None
    direction: Direction | None = None
    person: str | None = None  # an email or a userId, as an operator types it
    event: str | None = None  # an event name (a Segment track's ``event``, an Iterable ``eventName``) or type

    def where(self, keys: Sequence[str] | None) -> list[Any]:
        # delivered rows changed last at or after their receipt: updated_at >= since uses ix_events_status_updated
        conditions: list[Any] = [events.c.status == Status.DELIVERED, events.c.updated_at >= self.since,
                                 events.c.received_at >= self.since, NOT_FORGOTTEN]
        if self.until:
            conditions.append(events.c.received_at < self.until)
        if self.direction:
            conditions.append(events.c.direction == self.direction)
        if keys is not None:
            conditions.append(events.c.user_key.in_(keys))
        return conditions

    def named(self, row: Row) -> bool:
        """Whether the row is of ``event`` (kind, a track's event name, or the Iterable call's eventName)."""
        if not self.event:
            return True
        body = (row.mapped or {}).get("body") or {}
        return self.event in (row.kind, row.payload.get("event"), body.get("eventName"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Replayed:
    """One entry of a row's replay history."""

    event_id: int
    run: str
    replayed_at: datetime
    outcome: str


async def _person_keys(conn: Any, text: str) -> list[str]:
    """The ordering keys a person's rows carry (as the console's timeline finds them); [] when unknown."""
    ident = people.identifier(text.strip()) if text.strip() else None
    if ident is None:
        return []
    person = await conn.scalar(sa.select(identities.c.person).where(identities.c.identifier == ident)) or ident
    named = (await conn.execute(sa.select(identities.c.identifier).where(identities.c.person == person))).all()
    return sorted({person, *(r.identifier for r in named)})


async def page(ledger: Ledger, wanted: ReplayFilter, *, after: int = 0, limit: int = 1000) -> tuple[list[Row], int]:
    """The next rows a replay selects (id order, ids above ``after``) and the last id read (the next ``after``);
    an empty list with ``after`` unchanged means there are no more."""
    async with ledger._tx() as conn:
        keys = await _person_keys(conn, wanted.person) if wanted.person else None
        while True:
            query = (sa.select(events).where(*wanted.where(keys), events.c.id > after)
                     .order_by(events.c.id).limit(limit))
            found = [_row(r) for r in (await conn.execute(query)).mappings()]
            if not found:
                return [], after
            after = found[-1].id
            rows = [row for row in found if wanted.named(row)]
            if rows:
                return rows, after


async def record(ledger: Ledger, run: str, outcomes: Sequence[tuple[int, str]], now: datetime) -> None:
    """Add one history entry per row sent again (``outcomes``: row id, "sent" or why not)."""
    if not outcomes:
        return
    async with ledger._tx() as conn:
        await conn.execute(replays.insert(), [{"event_id": row_id, "run": run, "replayed_at": now,
                                                "outcome": outcome[:1000]} for row_id, outcome in outcomes])


async def history(ledger: Ledger, event_id: int) -> list[Replayed]:
    """A row's replays, oldest first."""
    async with ledger._tx() as conn:
        found = (await conn.execute(sa.select(replays).where(replays.c.event_id == event_id)
                                    .order_by(replays.c.id))).mappings()
        return [Replayed(event_id=r["event_id"], run=r["run"], replayed_at=r["replayed_at"], outcome=r["outcome"])
                for r in found]


async def prune(ledger: Ledger, older_than: datetime) -> int:
    """Forget replay history older than the ledger's retention (its rows are pruned too)."""
    async with ledger._tx() as conn:
        return int((await conn.execute(replays.delete().where(replays.c.replayed_at < older_than))).rowcount or 0)
