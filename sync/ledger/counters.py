"""What the console's overview and failure groups read (SPEC section 12).

The overview sums the maintained 5-minute ``counters`` (``history.record`` bumps them at settlement): its
cost depends on the buckets in the window, never on how many rows the ledger holds. Failure groups read the
problem rows of one status through ``ix_events_status_name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger.history import BUCKET, EPOCH, bucket_of
from sync.ledger.schema import counters, events
from sync.model import LATENCY_EDGES, Direction, Status, reason_class

TREND_BUCKETS = 24  # the chart: the last two hours in 5-minute bars
QUANTILES = (0.5, 0.95, 0.99)
MAX_GROUP_REASONS = 50  # the exact reason texts a group retry names


@dataclass(slots=True, kw_only=True)
class Trend:
    """One direction's recent delivery: per 5-minute bucket (oldest first) and summed."""

    delivered: list[int] = field(default_factory=lambda: [0] * TREND_BUCKETS)
    failed: list[int] = field(default_factory=lambda: [0] * TREND_BUCKETS)
    delivered_hour: int = 0
    delivered_day: int = 0
    failed_hour: int = 0
    failed_day: int = 0
    last_delivery: datetime | None = None
    latency: dict[str, float | None] = field(default_factory=dict)  # "p50" -> seconds, over the last hour
    latency_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Trends:
    start: datetime  # the first bucket's start
    step: timedelta
    directions: dict[str, Trend]


async def trends(conn: AsyncConnection, now: datetime) -> Trends:
    """Deliveries and dead letters per 5 minutes, hour and day totals, the last delivery and the latency
    quantiles of the last hour, per direction."""
    current = bucket_of(now)
    start = current - BUCKET * (TREND_BUCKETS - 1)
    day, hour = current - timedelta(hours=24) + BUCKET, current - timedelta(hours=1) + BUCKET
    found = {d.value: Trend() for d in Direction}
    query = (sa.select(counters.c.bucket, counters.c.direction, counters.c.metric, sa.func.sum(counters.c.value))
             .where(counters.c.bucket >= day, counters.c.metric.in_(("delivered", "failed")))
             .group_by(counters.c.bucket, counters.c.direction, counters.c.metric))
    for bucket, direction, metric, value in (await conn.execute(query)).all():
        trend = found.setdefault(direction, Trend())
        _add(trend, metric, int(value or 0), bucket, start, hour)
    latency: dict[str, dict[str, float]] = {}
    query = (sa.select(counters.c.direction, counters.c.label, sa.func.sum(counters.c.value))
             .where(counters.c.bucket >= hour, counters.c.metric == "latency_count")
             .group_by(counters.c.direction, counters.c.label))
    for row in (await conn.execute(query)).all():
        latency.setdefault(str(row[0]), {})[str(row[1])] = float(row[2] or 0)
    last = sa.select(counters.c.direction, counters.c.value).where(counters.c.bucket == EPOCH,
                                                                    counters.c.metric == "last_delivery")
    for direction, value in (await conn.execute(last)).all():
        found.setdefault(direction, Trend()).last_delivery = datetime.fromtimestamp(value, now.tzinfo)
    for direction, trend in found.items():
        counts = latency.get(direction, {})
        trend.latency_count = int(sum(counts.values()))
        trend.latency = {f"p{round(q * 100)}": quantile(counts, q) for q in QUANTILES}
    return Trends(start=start, step=BUCKET, directions=found)


def _add(trend: Trend, metric: str, value: int, bucket: datetime, start: datetime, hour: datetime) -> None:
    recent = bucket >= hour
    if metric == "delivered":
        trend.delivered_day += value
        trend.delivered_hour += value if recent else 0
    else:
        trend.failed_day += value
        trend.failed_hour += value if recent else 0
    if bucket >= start:
        index = int((bucket - start) / BUCKET)
        if 0 <= index < TREND_BUCKETS:
            (trend.delivered if metric == "delivered" else trend.failed)[index] += value


def quantile(counts: dict[str, float], q: float) -> float | None:
    """The ``q`` quantile of a histogram (upper edge as text -> count), interpolated inside its bucket as
    Prometheus's ``histogram_quantile`` does; None without observations."""
    total = sum(counts.values())
    if not total:
        return None
    wanted, seen, lower = q * total, 0.0, 0.0
    for edge in LATENCY_EDGES:
        n = counts.get(f"{edge:g}", 0.0)
        if n and seen + n >= wanted:
            return lower + (edge - lower) * (wanted - seen) / n
        seen, lower = seen + n, edge
    return LATENCY_EDGES[-1]


@dataclass(slots=True, kw_only=True)
class Group:
    """Problem rows of one status that share direction, reason class and event name."""

    direction: str
    reason_class: str
    name: str | None
    hour: int = 0
    day: int = 0
    total: int = 0
    sample_id: int = 0
    sample_reason: str = ""
    latest: datetime | None = None  # the group's last change
    reasons: list[str] = field(default_factory=list)  # exact texts of its unclassified rows (a group retry's)


async def groups(conn: AsyncConnection, status: Status, now: datetime, *, direction: Direction | None = None,
                 limit: int = 100) -> list[Group]:
    """Failure groups of ``status`` rows, largest first, with counts for the last hour, 24 hours and all.

    Rows with a stored ``reason_class`` are counted from the covering index ``ix_events_failure_groups``;
    rows without one (recorded before revision 0008, or given their reason by a path that does not classify)
    are classified here from their reason text."""
    hour, day = now - timedelta(hours=1), now - timedelta(hours=24)
    e = events.c
    counts = (sa.func.count(), sa.func.sum(sa.case((e.updated_at >= hour, 1), else_=0)),
              sa.func.sum(sa.case((e.updated_at >= day, 1), else_=0)), sa.func.max(e.updated_at))
    mine = [e.status == status] + ([e.direction == direction] if direction else [])
    classified = (sa.select(e.direction, e.reason_class, e.name, *counts)
                  .where(*mine, e.reason_class.is_not(None)).group_by(e.direction, e.reason_class, e.name))
    unclassified = (sa.select(e.direction, e.reason, e.name, *counts)
                    .where(*mine, e.reason_class.is_(None)).group_by(e.direction, e.reason, e.name))
    merged: dict[tuple[str, str, str | None], Group] = {}
    for row_direction, cls, name, total, in_hour, in_day, latest in (await conn.execute(classified)).all():
        _merge(merged, (row_direction, cls, name), total, in_hour, in_day, latest, None)
    for row_direction, reason, name, total, in_hour, in_day, latest in (await conn.execute(unclassified)).all():
        _merge(merged, (row_direction, reason_class(reason), name), total, in_hour, in_day, latest, reason or "")
    found = sorted(merged.values(), key=lambda g: (-g.day, -g.total, g.direction, g.name or ""))[:limit]
    await _samples(conn, status, found)
    return found


async def _samples(conn: AsyncConnection, status: Status, found: list[Group]) -> None:
    """Each group's latest row, found by its (class, name, direction, last change): the aggregate reads only
    the covering index (an id would need the table on PostgreSQL)."""
    e = events.c
    wanted = {(g.reason_class, g.name, g.direction, g.latest) for g in found if g.latest is not None}
    if not wanted:
        return
    query = sa.select(e.id, e.reason, e.reason_class, e.name, e.direction, e.updated_at).where(
        e.status == status, e.updated_at.in_(sorted({w[3] for w in wanted})))
    latest: dict[tuple[str, str | None, str], tuple[int, str]] = {}
    for r in (await conn.execute(query)).all():
        cls = r.reason_class or reason_class(r.reason)
        key = (r.direction, r.name, cls)
        if (cls, r.name, r.direction, r.updated_at) in wanted and r.id > latest.get(key, (0, ""))[0]:
            latest[key] = (r.id, r.reason or "")
    for group in found:
        group.sample_id, group.sample_reason = latest.get((group.direction, group.name, group.reason_class),
                                                          (0, ""))


def _merge(merged: dict[tuple[str, str, str | None], Group], key: tuple[str, str, str | None], total: int,
           in_hour: int, in_day: int, latest: datetime | None, reason: str | None) -> None:
    group = merged.setdefault(key, Group(direction=key[0], reason_class=key[1], name=key[2]))
    group.total, group.hour, group.day = group.total + total, group.hour + int(in_hour), group.day + int(in_day)
    if latest is not None and (group.latest is None or latest > group.latest):
        group.latest = latest
    if reason is not None and len(group.reasons) < MAX_GROUP_REASONS:
        group.reasons.append(reason)


async def unclassified_reasons(conn: AsyncConnection, status: Status, cls: str) -> tuple[str, ...]:
    """The reason texts of ``status`` rows without a stored class that belong to class ``cls`` (at most
    ``MAX_GROUP_REASONS``; rows recorded before revision 0008)."""
    query = (sa.select(events.c.reason).where(events.c.status == status, events.c.reason_class.is_(None))
             .group_by(events.c.reason).limit(10_000))
    found = [r for (r,) in (await conn.execute(query)).all() if r and reason_class(r) == cls]
    return tuple(found[:MAX_GROUP_REASONS])
