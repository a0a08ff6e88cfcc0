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


SLOWEST = 1 / 8  # a 429 halves an endpoint's pace, down to this share of its limit
RECOVERY = 1 / 20  # each answer that is not a 429 gives back this share of the limit, up to the paced rate


def adapted(bucket: Bucket, paced: float, *, refused: bool) -> Bucket:
    """The bucket after an answer: a 429 (the upstream counts differently, or another client of the same
    project spends its limit) halves the pace; each accepted request raises it back by a twentieth of
    ``paced`` (the configured pace), so a lasting squeeze settles just under what is left (AIMD)."""
    if refused:
        return replace(bucket, rate=max(paced * SLOWEST, bucket.rate / 2))
    if bucket.rate >= paced:
        return bucket
    return replace(bucket, rate=min(paced, bucket.rate + paced * RECOVERY))


Shared = Callable[[str, float], Awaitable[float]]  # (endpoint, spacing) -> seconds to wait for the slot


class Throttle:
    """Awaitable front of the buckets; one bucket per endpoint name. With ``shared`` (the PostgreSQL ledger's
    pacing) the slots are taken across every replica instead; should that fail, this process paces alone."""

    def __init__(self, rates: Mapping[str, float], clock: Callable[[], float] = time.monotonic,
                 shared: Shared | None = None) -> None:
        self._clock, self._shared = clock, shared
        self._buckets = {name: new_bucket(rate, clock()) for name, rate in rates.items()}
        self._paced = {name: bucket.rate for name, bucket in self._buckets.items()}

    def rate(self, endpoint: str) -> float | None:
        """Requests per second this endpoint is paced at now (None: not limited)."""
        bucket = self._buckets.get(endpoint)
        return None if bucket is None else bucket.rate

    def answered(self, endpoint: str, status: int) -> None:
        """Adapt the endpoint's pace to an answer (``adapted``): slower after a 429, back up after others."""
        bucket = self._buckets.get(endpoint)
        if bucket is not None:
            self._buckets[endpoint] = adapted(bucket, self._paced[endpoint], refused=status == 429)

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
