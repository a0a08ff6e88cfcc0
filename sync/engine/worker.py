"""The one delivery engine: claim due rows, hand them to a sink, settle the outcome.

Both directions run it; only the sink differs (``sync.iterable.sink.IterableSink``,
``sync.segment.sink.SegmentSink``). The worker does the pipelining (the next claim while a round sends,
the settlement while the next one sends) and lease renewal; whether the direction may send now is its
``Gate``'s to say (``sync.engine.gate``), and what a round's results come to is
``sync.engine.settlement``'s, a pure function of the rows, the results and ``now``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from sync.engine import ahead
from sync.engine import retry as schedule
from sync.engine.gate import Gate
from sync.engine.settlement import Call, Failure, Results, deletion_retry, settlement_for
from sync.errors import LedgerError
from sync.metrics import Metrics
from sync.model import Claim, Direction, Downtime, Row, Settlement

log = logging.getLogger("sync.engine.worker")

T = TypeVar("T")
PROBE_SCAN = 100  # due rows a probe's claim looks through for one that may go now
REWRITE_FIRST, REWRITE_MAX = 0.05, 5.0  # backoff base and cap (s) between tries of a settlement through an outage

__all__ = ["Call", "DeliveryLedger", "Failure", "Results", "Sink", "Worker", "deletion_retry", "settlement_for"]


class Sink(Protocol):
    direction: Direction
    batch_limit: int

    async def deliver(self, rows: Sequence[Row]) -> Results: ...


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
        self.idle_seconds, self.retry_base = idle_seconds, retry_base
        self.gate = Gate(ledger, metrics, sink.direction, probe_seconds=probe_seconds, clock=lambda: self.clock())
        self.wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()  # set by stop(): cuts short a wait between tries of a settlement
        self._next: asyncio.Task[list[Row]] | None = None  # the claim made while the current round sends
        self._settling: asyncio.Task[None] | None = None  # the last round's settlement, being written
        self._behind: set[str] = set()  # people whose row failed in the last round: their next rows wait
        self._failed: frozenset[int] = frozenset()  # those rows (their person may have been merged since)

    @property
    def direction(self) -> Direction:
        return self.sink.direction

    @property
    def paused(self) -> str | None:
        """Why the upstream refused our credentials (``Gate.auth_paused``)."""
        return self.gate.auth_paused

    @property
    def operator_paused(self) -> str | None:
        """Why an operator paused this direction (``Gate.operator_paused``)."""
        return self.gate.operator_paused

    def notify(self) -> None:
        """New rows were recorded: deliver now rather than at the next poll (not while paused)."""
        if not self.paused:
            self.wake.set()

    def recheck(self) -> None:
        """An operator paused or resumed a direction in this process: look at the ledger again now."""
        self.gate.recheck()
        self.wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self.wake.set()

    async def run(self) -> None:
        log.info("delivery worker started", extra={"direction": self.direction.value})
        try:
            while not self._stopping:
                if held := self.gate.held():
                    await self._idle(held)
                    continue
                try:
                    worked = await self._round(overlap=True)
                    await self.gate.ledger_up()
                except LedgerError as exc:
                    self.gate.ledger_down(str(exc))
                    worked = False
                if not worked:
                    await self._idle(self.gate.idle_seconds(self.idle_seconds))
        finally:  # also when cancelled: the claim made ahead must not keep its leases
            await self._wind_down()

    async def _wind_down(self) -> None:
        """At stop: finish writing the last settlement, give back the claim made ahead (wait for it, so its
        leases are not taken after the release), then every lease still held."""
        self.stop()  # also when cancelled: a settlement tried again through an outage is tried once more, then left
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
        if await self.gate.paused_by_operator():
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
            await self._give_back(row.id for row in rows)
            return False
        finally:
            renewing.cancel()
        try:
            await self._settled()  # settlements apply in round order
        except LedgerError:  # this round was sent all the same: its outcome is written, its people held back
            self._sent(rows, results)
            raise
        self._sent(rows, results)
        if results.auth_error or results.retry_after:
            await self._settled()  # a pause or a hold: the claim made meanwhile goes back
            await self._drop_next()
        return results.auth_error is None

    def _sent(self, rows: Sequence[Row], results: Results) -> None:
        """A round went out: its settlement is written next (in the background), and the people whose row
        failed hold back their rows claimed meanwhile."""
        self._settling = asyncio.create_task(self._settle(rows, results), name=f"settle-{self.direction.value}")
        self._behind, self._failed = results.held_back(rows)

    async def _claim(self, in_flight: frozenset[int]) -> list[Row]:
        limit = PROBE_SCAN if self.paused else self.sink.batch_limit
        claim = Claim(direction=self.direction, owner=self.owner, limit=limit, lease_seconds=self.lease_seconds,
                      in_flight=in_flight)
        rows = await self.ledger.claim(claim, self.clock())
        if self.paused and len(rows) > 1:
            # while the credentials are refused one row goes, as a probe: from a claim wide enough that the
            # oldest due rows, waiting behind their person's retry, do not hide every other row (a claim of one
            # came back empty and the probe waited for that retry, minutes after the key worked again)
            await self._give_back(row.id for row in rows[1:])
            rows = rows[:1]
        return rows

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
        if checked.back:  # given back behind the last settlement, while this round sends
            self._settling = asyncio.create_task(self._release_after(self._settling, checked.back),
                                                 name=f"release-{self.direction.value}")
        return checked.send

    async def _release_after(self, settling: asyncio.Task[None] | None, ids: Iterable[int]) -> None:
        """Give back rows claimed ahead that wait behind a failed row, once the settlement before is written
        (settlements apply in order; its errors surface here, where the worker waits for this one). Not on
        the send's path: on SQLite's one connection the release would wait for that settlement's commit."""
        if settling is not None:
            await settling
        await self._give_back(ids)

    async def _drop_next(self) -> None:
        """Give back the rows of a claim made ahead (a pause, a hold, an error: they are not sent now)."""
        if self._next is None:
            return
        task, self._next = self._next, None
        rows = await task
        if rows:
            await self._give_back(row.id for row in rows)

    async def _settled(self) -> None:
        """Wait for the settlement still being written (its errors surface here)."""
        if self._settling is not None:
            task, self._settling = self._settling, None
            await task

    async def _rewritten(self, write: Callable[[], Awaitable[T]]) -> T:
        """A ledger write whose content only this process knows (a round's outcome, rows given back), tried
        again through a ledger outage until it is written: lost, its rows would stay leased (on SQLite until
        the process ends) and a sent row would go out again. At stop the error is raised instead (the leases
        then end as a crashed process's do)."""
        tries = 0
        while True:
            try:
                return await write()
            except LedgerError as exc:
                if self._stopping:
                    raise
                delay = schedule.backoff(tries, self.rng, base=REWRITE_FIRST, cap=REWRITE_MAX)
                tries += 1
                log.warning("could not write a settlement; trying again",
                            extra={"direction": self.direction.value, "error": str(exc), "in_seconds": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=delay)

    async def _give_back(self, ids: Iterable[int]) -> None:
        """Release rows this worker leased and will not send now (written through an outage, ``_rewritten``)."""
        released = Settlement(released=tuple(ids))
        if released.released:
            await self._rewritten(lambda: self.ledger.settle(released, self.clock(), owner=self.owner))

    async def _settle(self, rows: Sequence[Row], results: Results) -> None:
        now = self.clock()
        spans: list[Downtime] = []
        if results.failed:
            oldest = min(row.retry_from for row in rows)
            spans = await self._rewritten(lambda: self.ledger.downtime(self.direction, oldest))
        settlement = settlement_for(rows, results, now=now, max_retry_hours=self.max_retry_hours, rng=self.rng,
                                    retry_base=self.retry_base, downtime=spans)
        await self._rewritten(lambda: self.ledger.settle(settlement, now, owner=self.owner))
        self._count(rows, settlement, now)
        if asked := results.retry_after:  # Retry-After speaks for the whole upstream, not only for these rows
            self.gate.hold(asked)
        await self.gate.credentials(results.auth_error, now)

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

    def _count(self, rows: Sequence[Row], settlement: Settlement, now: datetime) -> None:
        direction = self.direction.value
        self.metrics.delivered.labels(direction=direction).inc(len(settlement.delivered))
        self.metrics.dead.labels(direction=direction).inc(len(settlement.dead))
        latency, per_direction = self.metrics.latency, self.metrics.delivery_latency.labels(direction=direction)
        for tried in settlement.attempts:  # end-to-end latency (a delivered row's), dead letters by reason and name
            if tried.latency is not None:
                latency.observe(tried.latency)
                per_direction.observe(tried.latency)
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
