"""The one delivery engine: claim due rows, hand them to a sink, settle the outcome.

Both directions run it; only the sink differs (``sync.iterable.sink.IterableSink``,
``sync.segment.sink.SegmentSink``). Settling is a pure function of the rows, the sink's results and
``now``; the worker loop only does I/O and waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sync.engine import ahead
from sync.engine import retry as schedule
from sync.errors import LedgerError
from sync.metrics import Metrics
from sync.model import Attempt, Claim, Direction, Downtime, Row, Settlement, event_name

log = logging.getLogger("sync.engine.worker")

OPERATOR_CHECK_SECONDS = 1.0

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """The request a row went out in: the endpoint actually called, the HTTP status (None: no answer) and an
    excerpt of the answer about this row (``sync.ledger.history.excerpt``)."""

    endpoint: str
    status: int | None
    answer: str = ""


class Sink(Protocol):
    direction: Direction
    batch_limit: int

    async def deliver(self, rows: Sequence[Row]) -> Results: ...


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
        attempts = row.attempts + 1
        at = None
        if row.kind == "delete":
            at = deletion_retry(now=now, attempts=attempts, failure=failure, rng=rng, base=retry_base)
        elif failure.retryable:
            hours = failure.window_seconds / 3600 if failure.window_seconds else max_retry_hours
            floor = max(failure.retry_after or 0.0, failure.wait or 0.0) or None
            at = schedule.next_attempt(now=now, received_at=row.retry_from, attempts=attempts,
                                       max_retry_hours=hours, rng=rng, retry_after=floor, base=retry_base,
                                       cap=failure.max_delay or schedule.CAP_SECONDS,
                                       excluded_seconds=schedule.downtime_within(spans, row.retry_from, now))
        if at is None:
            reason = failure.error if not failure.retryable else f"gave up after {attempts} attempts: {failure.error}"
            dead.append((row.id, reason))
        else:
            retry.append((row.id, at, failure.error))
    settled = set(results.delivered) | {f.row_id for f in results.failed}
    released = tuple(row.id for row in rows if row.id not in settled)
    forgotten = tuple(row.id for row in rows if row.kind == "delete" and row.id in set(results.delivered))
    return Settlement(delivered=tuple(results.delivered), retry=tuple(retry), dead=tuple(dead), released=released,
                      forgotten=forgotten, attempts=attempts_of(by_id, results, retry, dead, now))


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


DELETION_QUOTA_WAIT = 3600.0  # Iterable allows 1,000 forgets per project per 24 h: look again hourly


def deletion_retry(*, now: datetime, attempts: int, failure: Failure, rng: random.Random,
                   base: float = schedule.BASE_SECONDS) -> datetime:
    """When a deletion or forget that failed goes again: it is never dead-lettered (SPEC section 11). A used-up
    daily quota (429 "Daily limit ...") waits an hour; any other failure backs off as usual, without end."""
    if "daily limit" in failure.error.lower():
        return now + timedelta(seconds=DELETION_QUOTA_WAIT)
    delay = max(schedule.backoff(attempts - 1, rng, base=base), failure.retry_after or 0.0, failure.wait or 0.0)
    return now + timedelta(seconds=delay)


class DeliveryLedger(Protocol):
    """What the delivery engine needs of a ledger (``sync.ledger.store.Ledger``, ``sync.ledger.memory.MemoryLedger``)."""

    async def claim(self, claim: Claim, now: datetime) -> list[Row]: ...

    async def recheck(self, owner: str, ids: Sequence[int]) -> dict[int, tuple[str | None, bool]]: ...

    async def renew(self, owner: str, ids: Sequence[int], until: datetime, *, lease_seconds: float | None = None
                    ) -> int: ...

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None: ...

    async def release_owner(self, owner: str, now: datetime) -> int: ...

    async def pause(self, direction: Direction, reason: str, now: datetime, *, kind: str = ...) -> None: ...

    async def resume(self, direction: Direction, now: datetime, *, kind: str = ...) -> int: ...

    async def held_by_operator(self, direction: Direction) -> str | None: ...

    async def add_downtime(self, span: Downtime) -> None: ...

    async def downtime(self, direction: Direction, since: datetime) -> list[Downtime]: ...


class Worker:
    """Drains one direction of the ledger through one sink until stopped."""

    def __init__(
        self,
        ledger: DeliveryLedger,
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
        self.paused: str | None = None  # why the upstream refused our credentials
        self.operator_paused: str | None = None  # why an operator paused this direction (console)
        self._operator_checked = -OPERATOR_CHECK_SECONDS
        self._stopping = False
        self._probe_delay = probe_seconds
        self._hold_until = 0.0  # monotonic time before which the upstream asked us not to call
        self._outage: tuple[datetime, str] | None = None  # since when, and why, the ledger has not answered
        self._stale_pause = True  # a pause recorded before this process started is closed by the first success
        self._next: asyncio.Task[list[Row]] | None = None  # the claim made while the current round sends
        self._settling: asyncio.Task[None] | None = None  # the last round's settlement, being written
        self._behind: set[str] = set()  # people whose row failed in the last round: their next rows wait
        self._failed: frozenset[int] = frozenset()  # those rows (their person may have been merged since)

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

    def recheck(self) -> None:
        """An operator paused or resumed a direction in this process: look at the ledger again now."""
        self._operator_checked = -OPERATOR_CHECK_SECONDS
        self.wake.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def run(self) -> None:
        log.info("delivery worker started", extra={"direction": self.direction.value})
        try:
            while not self._stopping:
                if self._held:
                    await self._idle(self._held)
                    continue
                try:
                    worked = await self._round(overlap=True)
                    await self._outage_over()
                except LedgerError as exc:
                    log.warning("ledger unavailable, delivery waits", extra={"direction": self.direction.value,
                                                                            "error": str(exc)})
                    self._outage = self._outage or (self.clock(), str(exc))
                    worked = False
                if not worked:
                    await self._idle(self._probe_delay if self.paused else self.idle_seconds)
        finally:  # also when cancelled: the claim made ahead must not keep its leases
            await self._wind_down()

    async def _wind_down(self) -> None:
        """At stop: finish writing the last settlement, give back the claim made ahead (wait for it, so its
        leases are not taken after the release), then every lease still held."""
        with contextlib.suppress(LedgerError):
            await self._settled()
        with contextlib.suppress(LedgerError):
            await self._drop_next()
        await self._release()

    async def round(self) -> bool:
        """Claim, deliver and settle once, nothing overlapped; return whether there was anything to do."""
        worked = await self._round(overlap=False)
        await self._settled()
        return worked

    async def _round(self, *, overlap: bool) -> bool:
        """One round. With ``overlap`` the next claim runs while this round sends, and this round's settlement
        while the next one sends: upstream latency and ledger time no longer add up. A person's rows in the
        next claim wait behind their rows in this one, and go back to the ledger if one of those failed."""
        if await self._paused_by_operator():
            await self._drop_next()
            return False
        rows = await self._take()
        if not rows:
            await self._settled()
            return False
        if overlap and not self.paused:
            self._next = asyncio.create_task(self._claim_after(self._settling, frozenset(row.id for row in rows)),
                                             name=f"claim-{self.direction.value}")
        renewing = asyncio.create_task(self._renew(rows), name=f"renew-{self.direction.value}")
        try:
            results = await self.sink.deliver(rows)
        except Exception:  # a bug in a sink must not kill the worker: give the rows back, log, go on
            log.exception("delivery round failed; its rows are released", extra={"direction": self.direction.value,
                                                                                 "rows": len(rows)})
            await self._drop_next()
            await self.ledger.settle(Settlement(released=tuple(row.id for row in rows)), self.clock(),
                                     owner=self.owner)
            return False
        finally:
            renewing.cancel()
        await self._settled()  # settlements apply in round order
        self._settling = asyncio.create_task(self._settle(rows, results), name=f"settle-{self.direction.value}")
        failed = {f.row_id for f in results.failed if f.retryable}
        self._behind = {row.user_key for row in rows if row.user_key and row.id in failed}
        self._failed = frozenset(row.id for row in rows if row.user_key and row.id in failed)
        if results.auth_error or any(f.retry_after for f in results.failed):
            await self._settled()  # a pause or a hold: the claim made meanwhile goes back
            await self._drop_next()
        return results.auth_error is None

    async def _claim(self, in_flight: frozenset[int]) -> list[Row]:
        limit = 1 if self.paused else self.sink.batch_limit
        claim = Claim(direction=self.direction, owner=self.owner, limit=limit, lease_seconds=self.lease_seconds,
                      in_flight=in_flight)
        return await self.ledger.claim(claim, self.clock())

    async def _claim_after(self, settling: asyncio.Task[None] | None, in_flight: frozenset[int]) -> list[Row]:
        """The claim made ahead, once the previous round's settlement is written: before it, that round's people
        still look busy, their next rows are not taken and the worker would idle with work due. (The
        settlement's own errors surface where the worker waits for it.)"""
        if settling is not None:
            await asyncio.wait([settling])
        return await self._claim(in_flight)

    async def _take(self) -> list[Row]:
        """The rows of this round: the claim made while the last round sent, checked again now (``sync.engine.ahead``:
        rows no longer sendable are dropped, the people whose earlier row failed in it go back and wait behind
        that row, merged people included), or a claim made now."""
        if self._next is None:
            return await self._claim(frozenset())
        task, self._next = self._next, None
        rows = await task
        if not rows:
            return rows
        current = await self.ledger.recheck(self.owner, [row.id for row in rows] + list(self._failed))
        checked = ahead.turn(rows, current, self._failed, self._behind)
        if checked.gone:
            log.info("rows claimed ahead are no longer sendable; not sent",
                     extra={"direction": self.direction.value, "rows": len(checked.gone)})
        if checked.back:
            await self._settled()
            await self.ledger.settle(Settlement(released=tuple(checked.back)), self.clock(), owner=self.owner)
        return checked.send

    async def _drop_next(self) -> None:
        """Give back the rows of a claim made ahead (a pause, a hold, an error: they are not sent now)."""
        if self._next is None:
            return
        task, self._next = self._next, None
        rows = await task
        if rows:
            await self.ledger.settle(Settlement(released=tuple(row.id for row in rows)), self.clock(),
                                     owner=self.owner)

    async def _settled(self) -> None:
        """Wait for the settlement still being written (its errors surface here)."""
        if self._settling is not None:
            task, self._settling = self._settling, None
            await task

    async def _settle(self, rows: Sequence[Row], results: Results) -> None:
        now = self.clock()
        spans: list[Downtime] = []
        if results.failed:
            oldest = min(row.retry_from for row in rows)
            spans = await self.ledger.downtime(self.direction, oldest)
        settlement = settlement_for(rows, results, now=now, max_retry_hours=self.max_retry_hours, rng=self.rng,
                                    retry_base=self.retry_base, downtime=spans)
        await self.ledger.settle(settlement, now, owner=self.owner)
        self._count(rows, settlement, now)
        asked = [f.retry_after for f in results.failed if f.retry_after]
        if asked:  # Retry-After speaks for the whole upstream, not only for these rows
            wait = schedule.clamp_retry_after(max(asked))
            if wait >= schedule.MAX_RETRY_AFTER:
                log.warning("upstream asked to wait longer than the maximum; waiting the maximum",
                            extra={"direction": self.direction.value, "asked": max(asked), "wait": wait})
            self._hold_until = time.monotonic() + wait
        await self._track_pause(results.auth_error, now)

    async def _renew(self, rows: Sequence[Row]) -> None:
        """Keep the round's leases alive while the sink works, however long it takes (and those of the claim
        made meanwhile, which waits for this round)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ids = [row.id for row in rows]
            ahead = self._next
            if ahead is not None and ahead.done() and not ahead.cancelled() and ahead.exception() is None:
                ids += [row.id for row in ahead.result()]
            try:
                held = await self.ledger.renew(self.owner, ids, self.clock() + timedelta(seconds=self.lease_seconds),
                                               lease_seconds=self.lease_seconds)
            except LedgerError as exc:
                log.warning("could not renew leases", extra={"direction": self.direction.value, "error": str(exc)})
                continue
            if held < len(ids):
                log.warning("some leases were lost during a round; their settlement will be ignored",
                            extra={"direction": self.direction.value, "lost": len(ids) - held})

    async def _paused_by_operator(self) -> bool:
        """Whether an operator paused this direction (read from the ledger at most once a second, so a pause
        made on any replica stops them all)."""
        if time.monotonic() - self._operator_checked >= OPERATOR_CHECK_SECONDS:
            reason = await self.ledger.held_by_operator(self.direction)
            self._operator_checked = time.monotonic()
            if reason != self.operator_paused:
                log.warning("direction paused by an operator" if reason else "direction resumed by an operator",
                            extra={"direction": self.direction.value, "reason": reason or ""})
            self.operator_paused = reason
        return self.operator_paused is not None

    async def _outage_over(self) -> None:
        """The ledger answers again: record the outage, so it does not count against retry windows."""
        if self._outage is None:
            return
        since, reason = self._outage
        span = Downtime(direction=self.direction, kind="ledger", reason=reason, started_at=since,
                        ended_at=self.clock())
        await self.ledger.add_downtime(span)
        self._outage = None
        log.warning("ledger reachable again; delivery resumed", extra={"direction": self.direction.value,
                                                                      "outage_seconds": (span.ended_at or since)
                                                                      .timestamp() - since.timestamp()})

    async def _track_pause(self, auth_error: str | None, now: datetime) -> None:
        direction = self.direction.value
        if auth_error and not self.paused:
            log.error("upstream rejected the credentials; direction paused", extra={"direction": direction,
                                                                                  "error": auth_error})
            await self.ledger.pause(self.direction, auth_error, now)
        elif auth_error:
            self._probe_delay = min(self._probe_delay * 2, 60.0)
        elif self.paused or self._stale_pause:
            if await self.ledger.resume(self.direction, now):
                log.warning("credentials accepted again; direction resumed", extra={"direction": direction})
            self._probe_delay = self.probe_seconds
        self._stale_pause = False
        self.paused = auth_error
        self.metrics.paused.labels(direction=direction).set(1 if auth_error else 0)

    def _count(self, rows: Sequence[Row], settlement: Settlement, now: datetime) -> None:
        direction = self.direction.value
        received = {row.id: row.received_at for row in rows}
        self.metrics.delivered.labels(direction=direction).inc(len(settlement.delivered))
        self.metrics.dead.labels(direction=direction).inc(len(settlement.dead))
        for row_id in settlement.delivered:
            self.metrics.latency.observe(max(0.0, (now - received[row_id]).total_seconds()))
        for tried in settlement.attempts:  # end-to-end latency per direction, dead letters by reason and name
            if tried.latency is not None:
                self.metrics.delivery_latency.labels(direction=direction).observe(tried.latency)
            elif tried.outcome == "dead":
                self.metrics.failed(direction, tried.reason, tried.name)
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
