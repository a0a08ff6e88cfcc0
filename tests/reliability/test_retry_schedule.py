"""The retry schedule with a controllable clock: every attempt lands where the schedule says, the row
gives up at ``delivery.max_retry_hours`` (72 h by default) as ``dead`` with its reason, and
``ledger retry`` puts it back."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sync.engine import retry as schedule
from sync.engine.worker import Failure, Results, Worker
from sync.ledger.store import Ledger
from sync.metrics import Metrics
from sync.model import Direction, NewEvent, Row, Status
from tests.acceptance.test_commands import cli, write_config

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEED = 72


class FlakySink:
    direction = Direction.OUTBOUND
    batch_limit = 10

    def __init__(self) -> None:
        self.failing = True
        self.calls: list[datetime] = []
        self.clock: Clock | None = None

    async def deliver(self, rows: Sequence[Row]) -> Results:
        assert self.clock is not None
        self.calls.append(self.clock.now)
        if self.failing:
            return Results(failed=[Failure(row_id=r.id, error="HTTP 503 GenericError", retryable=True) for r in rows])
        return Results(delivered=[r.id for r in rows])


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def expected_attempts(hours: float) -> list[datetime]:
    """The schedule on its own: the times of every attempt until it gives up."""
    rng, now, attempts, times = random.Random(SEED), T0, 0, [T0]
    while True:
        attempts += 1
        at = schedule.next_attempt(now=now, received_at=T0, attempts=attempts, max_retry_hours=hours, rng=rng)
        if at is None:
            return times
        now = at
        times.append(at)


async def test_attempts_follow_the_schedule_until_the_give_up_point(ledger: Ledger, ledger_url: str,
                                                                    tmp_path: Path) -> None:
    clock, sink = Clock(), FlakySink()
    sink.clock = clock
    worker = Worker(ledger, sink, Metrics(), owner="w", max_retry_hours=72, lease_seconds=60, clock=clock,
                    rng=random.Random(SEED))
    await ledger.record([NewEvent(direction=Direction.OUTBOUND, key="m1", kind="track", payload={},
                                  user_key="u")], T0)
    while True:
        assert await worker.round()
        row = await ledger.get(Direction.OUTBOUND, "m1")
        assert row is not None
        if row.status is Status.DEAD:
            break
        assert not await worker.round() or False  # nothing is due before next_attempt_at
        clock.now = row.next_attempt_at
    expected = expected_attempts(72)
    assert sink.calls == expected
    assert len(expected) > 50 and expected[-1] == T0 + timedelta(hours=72)  # the last try is at the deadline
    gaps = [(b - a).total_seconds() for a, b in zip(expected, expected[1:], strict=False)]
    assert max(gaps) <= schedule.CAP_SECONDS and len(set(gaps)) == len(gaps)  # capped and jittered
    assert row.attempts == len(expected)
    assert row.reason == f"gave up after {len(expected)} attempts: HTTP 503 GenericError"

    config = write_config(tmp_path, ledger_url)
    code, out, _ = await cli("ledger", "retry", "--status", "dead", "--config", str(config))
    assert (code, out.strip()) == (0, "requeued 1 rows as pending")
    sink.failing = False
    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await worker.round()
    delivered = await ledger.get(Direction.OUTBOUND, "m1")
    assert delivered is not None and delivered.status is Status.DELIVERED
    assert delivered.attempts == len(expected) + 1  # attempts never go back


async def test_a_shorter_window_gives_up_sooner(ledger: Ledger) -> None:
    clock, sink = Clock(), FlakySink()
    sink.clock = clock
    worker = Worker(ledger, sink, Metrics(), owner="w", max_retry_hours=0.01, lease_seconds=60, clock=clock,
                    rng=random.Random(SEED))
    await ledger.record([NewEvent(direction=Direction.OUTBOUND, key="m", kind="track", payload={})], T0)
    for _ in range(100):
        await worker.round()
        row = await ledger.get(Direction.OUTBOUND, "m")
        assert row is not None
        if row.status is Status.DEAD:
            break
        clock.now = row.next_attempt_at
    assert row.status is Status.DEAD and clock.now <= T0 + timedelta(hours=0.01)
    assert sink.calls == expected_attempts(0.01)
