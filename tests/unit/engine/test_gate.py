"""May a direction send now, and why not (``sync.engine.gate``): pauses, holds and outages, on a moved clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.engine import retry as schedule
from sync.engine.gate import MAX_PROBE_SECONDS, OPERATOR_CHECK_SECONDS, Gate
from sync.ledger.memory import MemoryLedger
from sync.metrics import Metrics
from sync.model import Direction

OUT = Direction.OUTBOUND
T0 = datetime(2026, 6, 1, tzinfo=UTC)


class Clocks:
    """A monotonic clock and a UTC clock the test moves together."""

    def __init__(self) -> None:
        self.seconds = 100.0

    def monotonic(self) -> float:
        return self.seconds

    def utc(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)


def gate(ledger: MemoryLedger, clocks: Clocks) -> Gate:
    return Gate(ledger, Metrics(), OUT, probe_seconds=2.0, clock=clocks.utc, monotonic=clocks.monotonic)


@pytest.mark.parametrize(("asked", "held"), [(5.0, 5.0), (1e15, schedule.MAX_RETRY_AFTER), (float("nan"), 0.0)])
def test_a_retry_after_holds_the_direction_for_at_most_the_maximum(asked: float, held: float) -> None:
    clocks = Clocks()
    g = gate(MemoryLedger(), clocks)
    g.hold(asked)
    assert g.held() == held
    assert (g.why_not() is None) == (held == 0)
    clocks.seconds += held
    assert g.held() == 0 and g.why_not() is None


async def test_refused_credentials_pause_probe_ever_slower_and_resume_in_the_ledger() -> None:
    ledger, clocks = MemoryLedger(), Clocks()
    g = gate(ledger, clocks)
    await g.credentials("HTTP 401", clocks.utc())
    assert g.why_paused() == "HTTP 401" and g.idle_seconds(0.5) == 2.0
    assert [s.kind for s in ledger.spans if s.ended_at is None] == ["paused"]
    for expected in (4.0, 8.0, 16.0, 32.0, MAX_PROBE_SECONDS, MAX_PROBE_SECONDS):
        await g.credentials("HTTP 401", clocks.utc())
        assert g.idle_seconds(0.5) == expected
    await g.credentials(None, clocks.utc())
    assert g.why_paused() is None and g.idle_seconds(0.5) == 0.5
    assert all(s.ended_at is not None for s in ledger.spans)


async def test_a_pause_an_earlier_process_recorded_is_closed_by_the_first_accepted_round() -> None:
    ledger, clocks = MemoryLedger(), Clocks()
    await ledger.pause(OUT, "HTTP 401", T0)
    await gate(ledger, clocks).credentials(None, clocks.utc())
    assert all(s.ended_at is not None for s in ledger.spans)


async def test_an_operators_pause_is_read_from_the_ledger_at_most_once_a_second_unless_rechecked() -> None:
    ledger, clocks = MemoryLedger(), Clocks()
    g = gate(ledger, clocks)
    assert await g.paused_by_operator() is False
    await ledger.pause(OUT, "maintenance", T0, kind="manual")  # on another replica
    assert await g.paused_by_operator() is False  # not read again yet
    clocks.seconds += OPERATOR_CHECK_SECONDS
    assert await g.paused_by_operator() is True and g.why_paused() == "maintenance"
    assert g.why_not() == "paused by an operator: maintenance"
    # the metric the "direction paused" alert reads shows it (it showed refused credentials only)
    assert 'sync_direction_paused{direction="outbound"} 1.0' in g.metrics.render().decode()
    await ledger.resume(OUT, T0, kind="manual")  # in this process: the console asks for a recheck
    g.recheck()
    assert await g.paused_by_operator() is False and g.why_paused() is None
    assert 'sync_direction_paused{direction="outbound"} 0.0' in g.metrics.render().decode()


async def test_a_ledger_outage_is_recorded_as_downtime_once_the_ledger_answers() -> None:
    ledger, clocks = MemoryLedger(), Clocks()
    g = gate(ledger, clocks)
    g.ledger_down("pool timeout")
    clocks.seconds += 30
    g.ledger_down("pool timeout again")  # the outage runs from its first failure
    assert g.why_not() == "ledger unavailable: pool timeout"
    await g.ledger_up()
    assert g.why_not() is None
    [span] = await ledger.downtime(OUT, T0)
    assert (span.kind, span.reason) == ("ledger", "pool timeout")
    assert span.ended_at is not None and (span.ended_at - span.started_at).total_seconds() == 30
