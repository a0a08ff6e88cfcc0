"""Token buckets per upstream endpoint, so the daemon stays under the documented limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from sync.errors import LedgerError

log = logging.getLogger("sync.engine.throttle")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    updated: float


def reserve(bucket: Bucket, now: float) -> tuple[Bucket, float]:
    """Take one token; return the new bucket and how long to wait before using it."""
    tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate) - 1
    wait = 0.0 if tokens >= 0 else -tokens / bucket.rate
    return replace(bucket, tokens=tokens, updated=now), wait


HEADROOM = 0.95  # pace a little under each limit, so network jitter cannot push two requests too close


def new_bucket(rate: float, now: float) -> Bucket:
    """No burst: requests are spaced evenly, which also satisfies a sliding-window limiter."""
    return Bucket(rate=rate * HEADROOM, capacity=1.0, tokens=1.0, updated=now)


Shared = Callable[[str, float], Awaitable[float]]  # (endpoint, spacing) -> seconds to wait for the slot


class Throttle:
    """Awaitable front of the buckets; one bucket per endpoint name. With ``shared`` (the PostgreSQL ledger's
    pacing) the slots are taken across every replica instead; should that fail, this process paces alone."""

    def __init__(self, rates: Mapping[str, float], clock: Callable[[], float] = time.monotonic,
                 shared: Shared | None = None) -> None:
        self._clock, self._shared = clock, shared
        self._buckets = {name: new_bucket(rate, clock()) for name, rate in rates.items()}

    async def acquire(self, endpoint: str) -> None:
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            return
        if self._shared is not None:
            try:
                wait = await self._shared(endpoint, 1.0 / bucket.rate)
            except LedgerError as exc:
                log.warning("shared pacing unavailable; pacing this process alone", extra={"error": str(exc)})
            else:
                if wait > 0:
                    await asyncio.sleep(wait)
                return
        self._buckets[endpoint], wait = reserve(bucket, self._clock())
        if wait > 0:
            await asyncio.sleep(wait)
