"""What a delivery round came to, and the ledger changes that follow from it. Pure.

A sink reports ``Results`` (rows delivered, ``Failure``s, the request each row went out in); ``settlement_for``
turns them into a ``Settlement`` for the ledger: delivered, retried at a time, dead with a reason, released
untried, forgotten (a deletion done), with one history line (``Attempt``) per row tried. Time is passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.engine import retry as schedule
from sync.model import Attempt, Downtime, Row, Settlement, event_name

DELETION_QUOTA_WAIT = 3600.0  # Iterable allows 1,000 forgets per project per 24 h: look again hourly


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    row_id: int
    error: str
    retryable: bool
    retry_after: float | None = None  # the upstream (one endpoint: Segment's batch API) asked to wait this long
    # (Iterable's endpoints are held one by one in its client; its failures carry ``wait`` instead)
    wait: float | None = None  # this row (and its person) may not go before this many seconds
    window_seconds: float | None = None  # give up this long after the retry window started (not max_retry_hours)
    max_delay: float | None = None  # cap on the wait between tries (default: schedule.CAP_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """The request a row went out in: the endpoint actually called, the HTTP status (None: no answer) and an
    excerpt of the answer about this row (``sync.ledger.history.excerpt``)."""

    endpoint: str
    status: int | None
    answer: str = ""


@dataclass(slots=True, kw_only=True)
class Results:
    """What a sink did with the rows it was given. Rows in none of the lists are held (not tried)."""

    delivered: list[int] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    auth_error: str | None = None
    calls: dict[int, Call] = field(default_factory=dict)  # row id -> the last request made for it (its history)

    def called(self, row_ids: Iterable[int], endpoint: str, status: int | None, answer: str = "") -> None:
        for row_id in row_ids:
            self.calls[row_id] = Call(endpoint=endpoint, status=status, answer=answer)

    @property
    def retry_after(self) -> float | None:
        """The longest ``Retry-After`` the upstream gave for the whole direction in this round, if any."""
        return max((f.retry_after for f in self.failed if f.retry_after), default=None)

    def held_back(self, rows: Sequence[Row]) -> tuple[set[str], frozenset[int]]:
        """The people whose row failed in a way that will be retried, or was not tried (it goes back to the
        ledger as it was): their later rows must wait behind it. And those rows (their person may be merged
        with another before the next round)."""
        settled = set(self.delivered) | {f.row_id for f in self.failed if not f.retryable}
        mine = [row for row in rows if row.user_key and row.id not in settled]
        return {row.user_key for row in mine if row.user_key}, frozenset(row.id for row in mine)


def settlement_for(
    rows: Sequence[Row], results: Results, *, now: datetime, max_retry_hours: float, rng: random.Random,
    retry_base: float = schedule.BASE_SECONDS, downtime: Sequence[Downtime] = (),
) -> Settlement:
    """Turn a sink's results into ledger changes; rows the sink did not try are released as they were.

    Time in ``downtime`` (the direction paused, the ledger unreachable) does not use up a row's
    retry window.
    """
    by_id = {row.id: row for row in rows}
    spans = [(span.started_at, span.ended_at) for span in downtime]
    retry, dead = [], []
    for failure in results.failed:
        row = by_id[failure.row_id]
        at = _next_try(row, failure, now=now, max_retry_hours=max_retry_hours, rng=rng, base=retry_base,
                       spans=spans)
        if at is None:
            attempts = row.attempts + 1
            reason = failure.error if not failure.retryable else f"gave up after {attempts} attempts: {failure.error}"
            dead.append((row.id, reason))
        else:
            retry.append((row.id, at, failure.error))
    settled = set(results.delivered) | {f.row_id for f in results.failed}
    released = tuple(row.id for row in rows if row.id not in settled)
    forgotten = tuple(row.id for row in rows if row.kind == "delete" and row.id in set(results.delivered))
    return Settlement(delivered=tuple(results.delivered), retry=tuple(retry), dead=tuple(dead), released=released,
                      forgotten=forgotten, attempts=attempts_of(by_id, results, retry, dead, now))


def _next_try(row: Row, failure: Failure, *, now: datetime, max_retry_hours: float, rng: random.Random,
              base: float, spans: Sequence[tuple[datetime, datetime | None]]) -> datetime | None:
    """When a failed row goes again; None: it is dead."""
    attempts = row.attempts + 1
    if row.kind == "delete":
        return deletion_retry(now=now, attempts=attempts, failure=failure, rng=rng, base=base)
    if not failure.retryable:
        return None
    hours = failure.window_seconds / 3600 if failure.window_seconds else max_retry_hours
    floor = max(failure.retry_after or 0.0, failure.wait or 0.0) or None
    return schedule.next_attempt(now=now, received_at=row.retry_from, attempts=attempts, max_retry_hours=hours,
                                 rng=rng, retry_after=floor, base=base, cap=failure.max_delay or schedule.CAP_SECONDS,
                                 excluded_seconds=schedule.downtime_within(spans, row.retry_from, now))


def attempts_of(rows: dict[int, Row], results: Results, retry: Sequence[tuple[int, datetime, str]],
                dead: Sequence[tuple[int, str]], now: datetime) -> tuple[Attempt, ...]:
    """The history lines of one round: each row tried, what was called and what came of it."""
    outcomes: list[tuple[int, str, str | None, datetime | None]] = [(i, "delivered", None, None)
                                                                    for i in results.delivered]
    outcomes += [(i, "retry", error, at) for i, at, error in retry] + [(i, "dead", why, None) for i, why in dead]
    tried = []
    for row_id, outcome, error, at in outcomes:
        row, call = rows[row_id], results.calls.get(row_id)
        detail = "; ".join(p for p in (error, call.answer if call else "") if p) or None
        tried.append(Attempt(row_id=row_id, direction=row.direction, outcome=outcome, next_attempt_at=at,
                             endpoint=call.endpoint if call else None, http_status=call.status if call else None,
                             detail=detail, reason=error, name=row.name or event_name(row.direction, row.kind, row.payload),
                             latency=max(0.0, (now - row.received_at).total_seconds())
                             if outcome == "delivered" else None))
    return tuple(tried)


def deletion_retry(*, now: datetime, attempts: int, failure: Failure, rng: random.Random,
                   base: float = schedule.BASE_SECONDS) -> datetime:
    """When a deletion or forget that failed goes again: it is never dead-lettered (SPEC section 11). A used-up
    daily quota (429 "Daily limit ...") waits an hour; any other failure backs off as usual, without end."""
    if "daily limit" in failure.error.lower():
        return now + timedelta(seconds=DELETION_QUOTA_WAIT)
    delay = max(schedule.backoff(attempts - 1, rng, base=base), failure.retry_after or 0.0, failure.wait or 0.0)
    return now + timedelta(seconds=delay)
