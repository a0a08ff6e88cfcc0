"""The one delivery engine: claim due rows, hand them to a sink, settle the outcome.

Both directions run it; only the sink differs (``sync.iterable.IterableSink``,
``sync.segment.SegmentSink``). Settling is a pure function of the rows, the sink's results and
``now``; the worker loop only does I/O and waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sync import schedule
from sync.errors import LedgerError
from sync.ledger import Claim, Direction, Ledger, Row, Settlement
from sync.metrics import Metrics

log = logging.getLogger("sync.delivery")

NOT_FOUND_RETRIES = 5  # an Iterable "user not found" may be creation lag; retry a few times first


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    row_id: int
    error: str
    retryable: bool
    retry_after: float | None = None
    max_attempts: int | None = None  # give up after this many tries even inside the retry window


@dataclass(slots=True, kw_only=True)
class Results:
    """What a sink did with the rows it was given. Rows in none of the lists are held (not tried)."""

    delivered: list[int] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    auth_error: str | None = None


class Sink(Protocol):
    direction: Direction
    batch_limit: int

    async def deliver(self, rows: Sequence[Row]) -> Results: ...


def settlement_for(
    rows: Sequence[Row], results: Results, *, now: datetime, max_retry_hours: float, rng: random.Random,
    retry_base: float = schedule.BASE_SECONDS,
) -> Settlement:
    """Turn a sink's results into ledger changes; rows the sink did not try are released as they were."""
    by_id = {row.id: row for row in rows}
    retry, dead = [], []
    for failure in results.failed:
        row = by_id[failure.row_id]
        attempts = row.attempts + 1
        at = None
        if failure.retryable and (failure.max_attempts is None or attempts < failure.max_attempts):
            at = schedule.next_attempt(now=now, received_at=row.received_at, attempts=attempts,
                                       max_retry_hours=max_retry_hours, rng=rng, retry_after=failure.retry_after,
                                       base=retry_base)
        if at is None:
            reason = failure.error if not failure.retryable else f"gave up after {attempts} attempts: {failure.error}"
            dead.append((row.id, reason))
        else:
            retry.append((row.id, at, failure.error))
    settled = set(results.delivered) | {f.row_id for f in results.failed}
    released = tuple(row.id for row in rows if row.id not in settled)
    return Settlement(delivered=tuple(results.delivered), retry=tuple(retry), dead=tuple(dead), released=released)


class Worker:
    """Drains one direction of the ledger through one sink until stopped."""

    def __init__(
        self,
        ledger: Ledger,
        sink: Sink,
        metrics: Metrics,
        *,
        owner: str,
        max_retry_hours: float,
        lease_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        idle_seconds: float = 0.5,
        probe_seconds: float = 2.0,
        retry_base: float = schedule.BASE_SECONDS,
    ) -> None:
        self.ledger, self.sink, self.metrics = ledger, sink, metrics
        self.owner, self.max_retry_hours, self.lease_seconds = owner, max_retry_hours, lease_seconds
        self.clock, self.rng = clock, rng or random.Random()
        self.idle_seconds, self.probe_seconds, self.retry_base = idle_seconds, probe_seconds, retry_base
        self.wake = asyncio.Event()
        self.paused: str | None = None
        self._stopping = False
        self._probe_delay = probe_seconds
        self._hold_until = 0.0  # monotonic time before which the upstream asked us not to call

    @property
    def _held(self) -> float:
        return max(0.0, self._hold_until - time.monotonic())

    @property
    def direction(self) -> Direction:
        return self.sink.direction

    def notify(self) -> None:
        """New rows were recorded: deliver now rather than at the next poll (not while paused)."""
        if not self.paused:
            self.wake.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def run(self) -> None:
        log.info("delivery worker started", extra={"direction": self.direction.value})
        while not self._stopping:
            if self._held:
                await self._idle(self._held)
                continue
            try:
                worked = await self.round()
            except LedgerError as exc:
                log.warning("ledger unavailable, delivery waits", extra={"direction": self.direction.value,
                                                                        "error": str(exc)})
                worked = False
            if not worked:
                await self._idle(self._probe_delay if self.paused else self.idle_seconds)
        await self._release()

    async def round(self) -> bool:
        """Claim, deliver and settle once; return whether there was anything to do."""
        limit = 1 if self.paused else self.sink.batch_limit
        claim = Claim(direction=self.direction, owner=self.owner, limit=limit, lease_seconds=self.lease_seconds)
        rows = await self.ledger.claim(claim, self.clock())
        if not rows:
            return False
        results = await self.sink.deliver(rows)
        now = self.clock()
        settlement = settlement_for(rows, results, now=now, max_retry_hours=self.max_retry_hours, rng=self.rng,
                                    retry_base=self.retry_base)
        await self.ledger.settle(settlement, now)
        self._count(rows, settlement, now)
        asked = [f.retry_after for f in results.failed if f.retry_after]
        if asked:  # Retry-After speaks for the whole upstream, not only for these rows
            self._hold_until = time.monotonic() + max(asked)
        await self._track_pause(results.auth_error, now)
        return results.auth_error is None

    async def _track_pause(self, auth_error: str | None, now: datetime) -> None:
        direction = self.direction.value
        if auth_error and not self.paused:
            log.error("upstream rejected the credentials; direction paused", extra={"direction": direction,
                                                                                  "error": auth_error})
            await self.ledger.pause(self.direction, auth_error, now)
        elif auth_error:
            self._probe_delay = min(self._probe_delay * 2, 60.0)
        elif self.paused:
            log.warning("credentials accepted again; direction resumed", extra={"direction": direction})
            await self.ledger.resume(self.direction)
            self._probe_delay = self.probe_seconds
        self.paused = auth_error
        self.metrics.paused.labels(direction=direction).set(1 if auth_error else 0)

    def _count(self, rows: Sequence[Row], settlement: Settlement, now: datetime) -> None:
        direction = self.direction.value
        received = {row.id: row.received_at for row in rows}
        self.metrics.delivered.labels(direction=direction).inc(len(settlement.delivered))
        self.metrics.dead.labels(direction=direction).inc(len(settlement.dead))
        for row_id in settlement.delivered:
            self.metrics.latency.observe(max(0.0, (now - received[row_id]).total_seconds()))
        for row_id, reason in settlement.dead:
            log.warning("event dead-lettered", extra={"direction": direction, "row": row_id, "reason": reason})

    async def _idle(self, seconds: float) -> None:
        if self._stopping:
            return
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self.wake.clear()

    async def _release(self) -> None:
        try:
            await self.ledger.release_owner(self.owner, self.clock())
        except LedgerError as exc:
            log.warning("could not release leases at stop; they expire by themselves", extra={"error": str(exc)})
