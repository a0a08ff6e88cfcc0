"""What the operator console reads and changes: indexed, paged queries over the ledger (SPEC section 12).

Every list is keyset-paged on an index (``ix_events_status_updated`` for the problem rows,
``ix_events_person`` for a timeline), so a page costs the same with a million rows as with a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sync import people
from sync.ledger.model import Direction, Row, Status
from sync.ledger.schema import downtime, events, identities
from sync.ledger.store import NOT_FORGOTTEN, PAUSE_KINDS, Ledger, _row

PROBLEMS = (Status.DEAD, Status.REJECTED, Status.SKIPPED, Status.HELD)
RETRYABLE = (Status.DEAD, Status.REJECTED, Status.SKIPPED)  # as ``ledger retry --status``
BUCKETS = 12  # the delivery chart: the last hour in 5-minute bars


@dataclass(frozen=True, slots=True, kw_only=True)
class RowFilter:
    """The problem rows an operator is looking at: one status, narrowed by the optional fields."""

    status: Status
    direction: Direction | None = None
    kind: str | None = None  # exact event type (track, identify, ...; inbound: Iterable's event name)
    name: str | None = None  # exact event name ("Order Completed"; a page's or screen's name)
    key: str | None = None  # the messageId (outbound) or inbound key
    people: tuple[str, ...] | None = None  # the ordering keys of one person (``person_keys``)
    reason: str | None = None  # a piece of the reason text, any case
    since: datetime | None = None  # last changed at or after
    until: datetime | None = None  # last changed before

    def where(self) -> list[Any]:
        conditions: list[Any] = [events.c.status == self.status]
        if self.direction:
            conditions.append(events.c.direction == self.direction)
        if self.kind:
            conditions.append(events.c.kind == self.kind)
        if self.name:
            conditions.append(events.c.name == self.name)
        if self.key:
            conditions.append(events.c.key == self.key)
        if self.people is not None:
            conditions.append(events.c.user_key.in_(list(self.people) or [""]))
        if self.reason:
            conditions.append(sa.func.lower(events.c.reason).contains(self.reason.lower(), autoescape=True))
        if self.since:
            conditions.append(events.c.updated_at >= self.since)
        if self.until:
            conditions.append(events.c.updated_at < self.until)
        return conditions


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    rows: list[Row]
    next: str | None  # the cursor of the following page (None: this is the last)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    direction: str
    kind: str  # "paused" (credentials refused) or "manual" (an operator)
    reason: str
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    counts: dict[tuple[str, str], int]
    oldest_pending: dict[str, datetime]
    pauses: list[Pause]
    delivered: dict[str, list[int]]  # per direction, delivered rows per 5-minute bucket, oldest first


async def overview(ledger: Ledger, now: datetime) -> Overview:
    stats = await ledger.stats()
    start = now - timedelta(hours=1)
    step = timedelta(hours=1) / BUCKETS
    delivered = {d.value: [0] * BUCKETS for d in Direction}
    query = sa.select(downtime).where(downtime.c.ended_at.is_(None), downtime.c.kind.in_(PAUSE_KINDS))
    async with ledger._tx() as conn:
        pauses = [Pause(direction=r.direction, kind=r.kind, reason=r.reason, since=r.started_at)
                  for r in (await conn.execute(query.order_by(downtime.c.id))).all()]
        for n in range(BUCKETS):  # each a range count on (status, updated_at)
            low, high = start + step * n, start + step * (n + 1)
            counted = sa.select(events.c.direction, sa.func.count()).where(
                events.c.status == Status.DELIVERED, events.c.updated_at >= low, events.c.updated_at < high
            ).group_by(events.c.direction)
            for direction, count in (await conn.execute(counted)).all():
                delivered.setdefault(direction, [0] * BUCKETS)[n] = count
    return Overview(counts=stats.counts, oldest_pending=stats.oldest_pending, pauses=pauses, delivered=delivered)


async def problems(ledger: Ledger, wanted: RowFilter, *, after: str | None = None, limit: int = 50) -> Page:
    """A page of ``wanted`` rows, most recently changed first; ``after`` is the previous page's cursor."""
    query = sa.select(events).where(*wanted.where())
    if after:
        moment, row_id = _cursor(after)
        query = query.where(sa.or_(events.c.updated_at < moment,
                                   sa.and_(events.c.updated_at == moment, events.c.id < row_id)))
    query = query.order_by(events.c.updated_at.desc(), events.c.id.desc()).limit(limit + 1)
    async with ledger._tx() as conn:
        rows = [_row(r) for r in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows=rows, next=f"{rows[-1].updated_at.isoformat()}|{rows[-1].id}" if more else None)


async def count_matching(ledger: Ledger, wanted: RowFilter) -> int:
    query = sa.select(sa.func.count()).select_from(events).where(*wanted.where(), NOT_FORGOTTEN)
    async with ledger._tx() as conn:
        return int(await conn.scalar(query) or 0)


async def row(ledger: Ledger, row_id: int) -> Row | None:
    async with ledger._tx() as conn:
        found = (await conn.execute(sa.select(events).where(events.c.id == row_id))).mappings().first()
    return _row(found) if found else None


def person_identifier(text: str) -> str | None:
    """What an operator typed (an email or a userId) as a ``sync.people`` identifier."""
    text = text.strip()
    return people.identifier(text) if text else None


async def person_keys(ledger: Ledger, text: str) -> tuple[str, ...]:
    """The ordering keys under which the person ``text`` names (an email or a userId) has rows."""
    ident = person_identifier(text)
    if ident is None:
        return ()
    async with ledger._tx() as conn:
        person = await conn.scalar(sa.select(identities.c.person).where(identities.c.identifier == ident)) or ident
        named = (await conn.execute(sa.select(identities.c.identifier).where(identities.c.person == person))).all()
    return tuple(sorted({person, ident, *(r.identifier for r in named)}))


async def timeline(ledger: Ledger, text: str = "", *, key: str = "", after: int = 0, limit: int = 100) -> Page:
    """Every row of the person ``text`` names (an email or a userId), or of the ordering ``key`` of a row:
    both directions, every status, in the order they arrived."""
    ident = person_identifier(text)
    if ident is None and not key:
        return Page(rows=[], next=None)
    async with ledger._tx() as conn:
        person = key or await conn.scalar(sa.select(identities.c.person).where(identities.c.identifier == ident))
        person = person or ident or ""
        # rows keep the key they had when they settled: a person merged since, or a rejected event that named
        # only an identifier, sits under one of the person's identifiers
        named = (await conn.execute(sa.select(identities.c.identifier).where(identities.c.person == person))).all()
        keys = sorted({person, *(r.identifier for r in named)})
        query = (sa.select(events).where(events.c.user_key.in_(keys), events.c.id > after)
                 .order_by(events.c.id).limit(limit + 1))
        rows = [_row(r) for r in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows=rows, next=str(rows[-1].id) if more else None)


def _cursor(text: str) -> tuple[datetime, int]:
    moment, _, row_id = text.rpartition("|")
    try:
        if len(text) > 80 or not (row_id.isascii() and row_id.isdigit() and len(row_id) <= 18):
            raise ValueError(text)
        when = datetime.fromisoformat(moment)
        return (when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)), int(row_id)
    except (ValueError, OverflowError):
        raise ValueError(f"not a page cursor: {text[:60]!r}") from None
