"""What the operator console reads and changes: indexed, paged queries over the ledger (SPEC section 12).

Every list is keyset-paged on an index (``ix_events_status_updated`` for the problem rows,
``ix_events_person`` for a timeline), so a page costs the same with a million rows as with a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import people
from sync.ledger.schema import downtime, events, identities
from sync.ledger.store import NOT_FORGOTTEN, PAUSE_KINDS, Ledger, _row
from sync.model import Direction, Row, Status

PROBLEMS = (Status.DEAD, Status.REJECTED, Status.SKIPPED, Status.HELD)
RETRYABLE = (Status.DEAD, Status.REJECTED, Status.SKIPPED)  # as ``ledger retry --status``


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
    reason_class: str | None = None  # a failure group's class (``history.reason_class``)
    reasons: tuple[str, ...] = ()  # with ``reason_class``: exact texts of the group's unclassified rows
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
        if self.key:  # both directions named, so the unique (direction, key) index answers it
            conditions.append(events.c.key == self.key)
            if not self.direction:
                conditions.append(events.c.direction.in_([d.value for d in Direction]))
        if self.people is not None:
            conditions.append(events.c.user_key.in_(list(self.people) or [""]))
        if self.reason_class and self.reasons:
            conditions.append(sa.or_(events.c.reason_class == self.reason_class,
                                     sa.and_(events.c.reason_class.is_(None), events.c.reason.in_(self.reasons))))
        elif self.reason_class:
            conditions.append(events.c.reason_class == self.reason_class)
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


async def pauses(conn: AsyncConnection) -> list[Pause]:
    """The open pause spans, oldest first."""
    query = sa.select(downtime).where(downtime.c.ended_at.is_(None), downtime.c.kind.in_(PAUSE_KINDS))
    return [Pause(direction=r.direction, kind=r.kind, reason=r.reason, since=r.started_at)
            for r in (await conn.execute(query.order_by(downtime.c.id))).all()]


async def tail(ledger: Ledger, *, direction: Direction | None = None, name: str | None = None,
               after: int = 0, limit: int = 50) -> list[Row]:
    """The most recently received rows (every status), newest first; with ``after``, only rows newer than that
    id. Reads ``ix_events_received`` backwards (``name``: among the latest 5,000)."""
    query = sa.select(events).where(events.c.id > after).order_by(events.c.received_at.desc(), events.c.id.desc())
    if direction or name:
        recent = sa.select(events.c.id).order_by(events.c.received_at.desc(), events.c.id.desc()).limit(5000)
        query = query.where(events.c.id.in_(recent.scalar_subquery()))
    if direction:
        query = query.where(events.c.direction == direction)
    if name:
        query = query.where(events.c.name == name)
    async with ledger._tx() as conn:
        return [_row(r) for r in (await conn.execute(query.limit(limit))).mappings()]


async def problems(ledger: Ledger, wanted: RowFilter, *, after: str | None = None, limit: int = 50) -> Page:
    """A page of ``wanted`` rows, most recently changed first; ``after`` is the previous page's cursor.
    Forgotten people's tombstones are left out, as ``count_matching`` leaves them out (the page said "10 rows
    match" above 13 rows); a forgotten person's search says they were forgotten."""
    query = sa.select(events).where(*wanted.where(), NOT_FORGOTTEN)
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


async def count_matching(ledger: Ledger, wanted: RowFilter, *, cap: int | None = None) -> int:
    """How many rows ``wanted`` selects (forgotten people's left out); with ``cap``, counting stops after
    ``cap + 1`` (a list page's cost stays bounded however many rows match)."""
    query = sa.select(sa.func.count()).select_from(events).where(*wanted.where(), NOT_FORGOTTEN)
    if cap is not None:
        some = sa.select(events.c.id).where(*wanted.where(), NOT_FORGOTTEN).limit(cap + 1).subquery()
        query = sa.select(sa.func.count()).select_from(some)
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
