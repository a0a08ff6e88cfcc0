"""When to try again: exponential backoff with full jitter, ``Retry-After`` and a give-up point.

Pure functions over plain values; the caller passes ``now`` and a random source.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

BASE_SECONDS = 1.0
CAP_SECONDS = 1800.0


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
) -> datetime | None:
    """The time of the next try, or None once the retry window of ``received_at`` has run out.

    ``attempts`` counts tries already made, this one included. A server's ``Retry-After`` is a
    floor: the row never goes back before it, jitter may push it later.
    """
    deadline = received_at + timedelta(hours=max_retry_hours)
    if now >= deadline:
        return None
    delay = backoff(attempts - 1, rng, base=base)
    if retry_after is not None:
        delay = max(delay, retry_after) + rng.uniform(0, min(retry_after, 1.0) * 0.1)
    return min(now + timedelta(seconds=delay), deadline)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
