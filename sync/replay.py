"""Replay (SPEC section 15): send delivered rows again, as recorded, with their original ids.

Iterable's event ``id`` (the Segment ``messageId``) and Segment's ``messageId`` (decided from the Iterable
webhook) are kept in each row's frozen call, so the upstream sees the same events again, not new ones
(Iterable upserts an event by its ``id``; Segment dedupes by ``messageId``). The rows go through the same
sinks and rate budget as delivery (the daemon's client inside ``serve``; on PostgreSQL the shared pacing);
a replay adds a history entry per row (``sync.ledger.replays``) and no event row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sync.engine.worker import Results, Sink
from sync.errors import SyncError
from sync.ledger import replays as store
from sync.ledger.replays import ReplayFilter
from sync.ledger.store import Ledger
from sync.model import Direction, Row

SAMPLE = 5


class ReplayStopped(SyncError):
    """The upstream refused our credentials: the replay stopped (what was sent is recorded)."""


@dataclass(slots=True, kw_only=True)
class Progress:
    """A replay so far: rows ``sent`` again, rows ``failed`` (with the first few reasons)."""

    run: str
    sent: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.sent + self.failed


def outcomes(rows: Sequence[Row], results: Results) -> list[tuple[int, str]]:
    """Each row's replay outcome: "sent", the sink's error, or "not sent" when the sink held it back."""
    errors = {f.row_id: f.error for f in results.failed}
    delivered = set(results.delivered)
    return [(row.id, "sent" if row.id in delivered else f"failed: {errors[row.id]}" if row.id in errors
             else "not sent: held back by the sink") for row in rows]


def new_run() -> str:
    return f"replay-{uuid.uuid4().hex[:12]}"


class Replayer:
    """Runs replays over ``sinks`` (one per direction that is on); ``chunk`` rows per round."""

    def __init__(self, ledger: Ledger, sinks: Mapping[Direction, Sink], *, retention_days: int = 7,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), chunk: int = 1000) -> None:
        self.ledger, self.sinks, self.retention_days = ledger, sinks, retention_days
        self.clock, self.chunk = clock, chunk

    async def preview(self, wanted: ReplayFilter, sample: int = SAMPLE) -> tuple[int, list[Row]]:
        """How many rows a replay would send, and the first ``sample`` of them (``--dry-run``)."""
        count, after = 0, 0
        first: list[Row] = []
        while True:
            rows, after = await store.page(self.ledger, self._narrowed(wanted), after=after, limit=self.chunk)
            if not rows:
                return count, first
            count += len(rows)
            first += rows[: max(0, sample - len(first))]

    async def run(self, wanted: ReplayFilter, report: Callable[[Progress], None] = lambda p: None, *,
                  run: str | None = None) -> Progress:
        """Send every selected row again; ``report`` is called after each round; ``run`` names the replay in
        the rows' history (default: a new name). Raises ``ReplayStopped`` when the upstream refuses the
        credentials (rows sent before are recorded)."""
        progress = Progress(run=run or new_run())
        report(progress)
        await store.prune(self.ledger, self.clock() - timedelta(days=self.retention_days))
        after = 0
        while True:
            rows, after = await store.page(self.ledger, self._narrowed(wanted), after=after, limit=self.chunk)
            if not rows:
                return progress
            for direction in (Direction.OUTBOUND, Direction.INBOUND):
                mine = [row for row in rows if row.direction is direction]
                if mine:
                    await self._send(direction, mine, progress)
            report(progress)

    def _narrowed(self, wanted: ReplayFilter) -> ReplayFilter:
        """Only directions this process can send (a direction that is off is not replayed)."""
        if wanted.direction is None and len(self.sinks) == 1:
            return ReplayFilter(since=wanted.since, until=wanted.until, direction=next(iter(self.sinks)),
                                person=wanted.person, event=wanted.event)
        return wanted

    async def _send(self, direction: Direction, rows: list[Row], progress: Progress) -> None:
        sink = self.sinks.get(direction)
        if sink is None:
            raise ReplayStopped(f"{direction.value} is not enabled: its rows cannot be replayed")
        results = await sink.deliver(rows)
        done = outcomes(rows, results)
        await store.record(self.ledger, progress.run, done, self.clock())
        for _, outcome in done:
            if outcome == "sent":
                progress.sent += 1
            else:
                progress.failed += 1
                if len(progress.reasons) < SAMPLE:
                    progress.reasons.append(outcome[:300])
        if results.auth_error:
            raise ReplayStopped(f"{direction.value}: {results.auth_error}; {progress.sent} rows were sent again")
