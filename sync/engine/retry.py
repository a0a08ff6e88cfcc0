"""When to try again: exponential backoff with full jitter, ``Retry-After`` and a give-up point.

Pure functions over plain values; the caller passes ``now`` and a random source.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

BASE_SECONDS = 1.0
CAP_SECONDS = 1800.0
MAX_RETRY_AFTER = 120.0  # a Retry-After is honoured up to this (SPEC section 4)
ABSURD_RETRY_AFTER = 86400.0  # past a day a Retry-After is read as absent: normal backoff (SPEC section 4)
_DELTA_SECONDS = re.compile(r" *[0-9]+(\.[0-9]+)? *")  # RFC 9110 delay-seconds (1*DIGIT), a fraction tolerated


def backoff(attempts: int, rng: random.Random, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2**attempts)] so retries spread out."""
    ceiling = min(cap, base * 2 ** min(attempts, 40))
    return rng.uniform(0, ceiling)


def next_attempt(
    *,
    now: datetime,
    received_at: datetime,
    attempts: int,
    max_retry_hours: float,
    rng: random.Random,
    retry_after: float | None = None,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    excluded_seconds: float = 0.0,
) -> datetime | None:
    """The time of the next try, or None once the retry window of ``received_at`` has run out.

    ``attempts`` counts tries already made, this one included. A server's ``Retry-After`` is a
    floor: the row never goes back before it, jitter may push it later. ``excluded_seconds`` is
    time inside the window in which the direction could not deliver (paused, ledger down): it
    does not count, so the window ends that much later.
    """
    deadline = received_at + timedelta(hours=max_retry_hours, seconds=max(0.0, excluded_seconds))
    if now >= deadline:
        return None
    delay = backoff(attempts - 1, rng, base=base, cap=cap)
    if retry_after is not None:
        retry_after = clamp_retry_after(retry_after)
        delay = max(delay, retry_after) + rng.uniform(0, min(retry_after, 1.0) * 0.1)
    return min(now + timedelta(seconds=delay), deadline)


def downtime_within(spans: Iterable[tuple[datetime, datetime | None]], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) covered by the union of ``spans`` (an open span runs until ``end``)."""
    clipped = sorted((max(s, start), min(e or end, end)) for s, e in spans)
    total, reach = 0.0, start
    for s, e in clipped:
        s = max(s, reach)
        if e > s:
            total += (e - s).total_seconds()
            reach = e
    return total


def clamp_retry_after(seconds: float) -> float:
    """A server's wait within [0, MAX_RETRY_AFTER]; NaN counts as no wait asked."""
    if math.isnan(seconds):
        return 0.0
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110 section 10.2.3: delay-seconds or an HTTP date), at most
    MAX_RETRY_AFTER. None (absent: normal backoff) when missing or not a finite, non-negative number of
    seconds or an HTTP date (``soon``, ``nan``, ``inf``, ``1e15``, ``-5``), or when it asks for more than a day;
    a date already past is 0."""
    if not value:
        return None
    seconds = float(value) if _DELTA_SECONDS.fullmatch(value) else _from_date(value, now)
    if seconds is None or not math.isfinite(seconds) or seconds > ABSURD_RETRY_AFTER:
        return None
    return clamp_retry_after(seconds)


def _from_date(value: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # asctime form: HTTP dates are GMT (RFC 9110 section 5.6.7)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
