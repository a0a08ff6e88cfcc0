"""Each row's delivery history and the counters the overview reads (SPEC section 12, "Finding and explaining").

``record`` is the one call settlement makes: inside the settlement's transaction it appends one ``attempts``
row per row tried (the endpoint actually called, the HTTP status, an excerpt of the answer, the next attempt)
and bumps the 5-minute ``counters`` (deliveries, dead letters per reason class and event name, the latency
histogram, the last delivery). The history is a table of its own, so it outlives a successful retry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger.base import NOT_FORGOTTEN
from sync.ledger.schema import UTCDateTime, attempts, counters, events
from sync.model import _CLASSES as _CLASSES
from sync.model import _EMAIL as _EMAIL
from sync.model import DETAIL_CHARS as DETAIL_CHARS
from sync.model import LATENCY_EDGES as LATENCY_EDGES
from sync.model import Attempt
from sync.model import event_name as event_name
from sync.model import excerpt as excerpt
from sync.model import reason_class as reason_class
from sync.model import scrub as scrub

BUCKET = timedelta(minutes=5)
# seconds, received -> delivered; the same edges as the ``sync_delivery_latency_seconds`` histogram
Counts = dict[tuple[str, str, str], float]  # (direction, metric, label) -> amount


async def record(conn: AsyncConnection, tried: Sequence[Attempt], now: datetime,
                 forgotten: Collection[int] = ()) -> None:
    """Append the history of one settlement and bump its counters (in the settlement's transaction). A row
    whose person was forgotten while the try ran gets no line, only its count: a line would write the person's
    data (the call, Iterable's answer) back under the tombstone. Delivered rows are read from ``events`` (their
    lines are one ``INSERT ... SELECT`` that leaves tombstones out); the others' ids are in ``forgotten``."""
    counts = _tally(tried)
    tried = [a for a in tried if a.row_id not in forgotten] if forgotten else tried
    if not tried:
        await bump(conn, counts, now)
        return
    delivered: dict[tuple[str | None, int | None, str | None], list[int]] = {}
    for a in tried:
        if a.outcome == "delivered":
            delivered.setdefault((a.endpoint, a.http_status, a.detail), []).append(a.row_id)
    for (endpoint, status, detail), ids in delivered.items():  # a bulk call's rows: one statement, ids as one bind
        columns = [events.c.id, sa.literal(now, UTCDateTime()), sa.literal("delivered"),
                   sa.literal(endpoint, sa.String()), sa.literal(status, sa.Integer()),
                   sa.literal(scrub(detail)[:DETAIL_CHARS] if detail else None, sa.Text())]
        await conn.execute(attempts.insert().from_select(
            ["event_id", "at", "outcome", "endpoint", "http_status", "detail"],
            sa.select(*columns).where(_ids(conn, ids), NOT_FORGOTTEN)))
    others = [a for a in tried if a.outcome != "delivered"]
    if others:
        await conn.execute(attempts.insert(), [
            {"event_id": a.row_id, "at": now, "outcome": a.outcome, "endpoint": a.endpoint,
             "http_status": a.http_status, "detail": scrub(a.detail)[:DETAIL_CHARS] if a.detail else None,
             "next_attempt_at": a.next_attempt_at} for a in others])
    dead = [{"row_id": a.row_id, "cls": reason_class(a.reason)} for a in tried if a.outcome == "dead"]
    if dead:  # the failure groups' index: a dead letter's reason class, beside its reason
        await conn.execute(events.update().where(events.c.id == sa.bindparam("row_id"), events.c.status == "dead")
                           .values(reason_class=sa.bindparam("cls")), dead)
    await bump(conn, counts, now)


async def note(conn: AsyncConnection, ids: Sequence[int], outcome: str, detail: str, now: datetime) -> None:
    """An operator's action in the rows' history (``requeued``, ``redecided``)."""
    if ids:
        await conn.execute(attempts.insert(), [{"event_id": i, "at": now, "outcome": outcome,
                                                "detail": scrub(detail)[:DETAIL_CHARS]} for i in ids])


def _ids(conn: AsyncConnection, ids: list[int]) -> Any:
    """``events.id IN (ids)`` as one parameter (a PostgreSQL array, or a JSON array SQLite unpacks)."""
    if conn.dialect.name == "postgresql":
        return events.c.id == sa.any_(sa.bindparam("history_ids", ids, type_=postgresql.ARRAY(sa.BigInteger())))
    unpacked = sa.select(sa.column("value", sa.BigInteger())).select_from(
        sa.func.json_each(sa.bindparam("history_ids", json.dumps(ids))))
    return events.c.id.in_(unpacked.scalar_subquery())


def _tally(tried: Sequence[Attempt]) -> Counts:
    counts: Counts = {}
    for a in tried:
        d = a.direction.value
        if a.outcome == "delivered":
            _add(counts, (d, "delivered", ""), 1)
            if a.latency is not None:
                _add(counts, (d, "latency_count", latency_edge(a.latency)), 1)
                _add(counts, (d, "latency_sum", ""), a.latency)
        elif a.outcome == "dead":
            _add(counts, (d, "failed", f"{reason_class(a.reason)}|{a.name or ''}"[:255]), 1)
    return counts


def _add(counts: Counts, key: tuple[str, str, str], amount: float) -> None:
    counts[key] = counts.get(key, 0.0) + amount


def latency_edge(seconds: float) -> str:
    """The histogram bucket (its upper edge, as text) ``seconds`` falls in."""
    return next((f"{edge:g}" for edge in LATENCY_EDGES if seconds <= edge), "+Inf")


async def bump(conn: AsyncConnection, counts: Counts, now: datetime) -> None:
    """Add ``counts`` ((direction, metric, label) -> amount) to the bucket of ``now``; note the last delivery."""
    bucket = bucket_of(now)
    rows = [{"bucket": bucket, "direction": d, "metric": m, "label": label, "value": float(n)}
            for (d, m, label), n in sorted(counts.items())]
    rows += [{"bucket": EPOCH, "direction": d, "metric": "last_delivery", "label": "", "value": now.timestamp()}
             for d in sorted({d for (d, m, _) in counts if m == "delivered"})]
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(counters)
    added = sa.case((stmt.excluded.metric == "last_delivery",
                     sa.case((stmt.excluded.value > counters.c.value, stmt.excluded.value), else_=counters.c.value)),
                    else_=counters.c.value + stmt.excluded.value)
    stmt = stmt.on_conflict_do_update(index_elements=["bucket", "direction", "metric", "label"],
                                      set_={"value": added})
    await conn.execute(stmt, rows)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the bucket of values that are not per time (the last delivery)


def bucket_of(moment: datetime) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(BUCKET.total_seconds()), UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of a row's history as the console shows it."""

    at: datetime
    outcome: str
    endpoint: str | None
    http_status: int | None
    detail: str | None
    next_attempt_at: datetime | None


async def of_row(conn: AsyncConnection, row_id: int, *, limit: int = 100) -> list[Entry]:
    """A row's history, oldest first (the latest ``limit`` entries)."""
    query = sa.select(attempts).where(attempts.c.event_id == row_id).order_by(attempts.c.id.desc()).limit(limit)
    found = [Entry(at=r.at, outcome=r.outcome, endpoint=r.endpoint, http_status=r.http_status, detail=r.detail,
                   next_attempt_at=r.next_attempt_at) for r in (await conn.execute(query)).all()]
    return found[::-1]


async def purge(conn: AsyncConnection, older_than: datetime) -> None:
    """Drop history and counters older than the ledger's retention (with ``Ledger.purge``)."""
    await conn.execute(attempts.delete().where(attempts.c.at < older_than))
    await conn.execute(counters.delete().where(counters.c.bucket < older_than, counters.c.bucket > EPOCH))
