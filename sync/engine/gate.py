"""May a direction send now, and if not, why: the one place the delivery worker asks (SPEC section 4).

Four things stop a direction, each with its own way back:
- the upstream refused the credentials (401/403): paused, recorded in the ledger, probed with one row at a
  time, doubling the wait between probes up to a minute, until a round is accepted;
- an operator paused it (console, on any replica): read from the ledger at most once a second;
- the ledger does not answer: an outage, recorded as downtime once it answers again, so it does not use up
  rows' retry windows;
- the upstream asked the whole direction to wait (``Retry-After`` on Segment's batch API): held until then,
  at most ``retry.MAX_RETRY_AFTER``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from sync.engine import retry as schedule
from sync.metrics import Metrics
from sync.model import Direction, Downtime

log = logging.getLogger("sync.engine.worker")

OPERATOR_CHECK_SECONDS = 1.0
MAX_PROBE_SECONDS = 60.0


class GateLedger(Protocol):
    """What the gate records in and reads from the ledger."""

    async def pause(self, direction: Direction, reason: str, now: datetime, *, kind: str = ...) -> None: ...

    async def resume(self, direction: Direction, now: datetime, *, kind: str = ...) -> int: ...

    async def held_by_operator(self, direction: Direction) -> str | None: ...

    async def add_downtime(self, span: Downtime) -> None: ...


class Gate:
    """One direction's permission to send. ``monotonic`` times the holds and the operator check;
    ``clock`` (UTC) dates what is written to the ledger."""

    def __init__(self, ledger: GateLedger, metrics: Metrics, direction: Direction, *, probe_seconds: float = 2.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ledger, self.metrics, self.direction = ledger, metrics, direction
        self.clock, self.monotonic = clock, monotonic
        self.auth_paused: str | None = None  # why the upstream refused our credentials
        self.operator_paused: str | None = None  # why an operator paused this direction
        self.probe_seconds = self.probe_delay = probe_seconds
        self.outage: tuple[datetime, str] | None = None  # since when, and why, the ledger has not answered
        self._hold_until = 0.0
        self._operator_checked = -OPERATOR_CHECK_SECONDS
        self._stale_pause = True  # a pause recorded before this process started is closed by the first success

    # -- reading --------------------------------------------------------------------------------------------

    def held(self) -> float:
        """Seconds the upstream asked this whole direction to wait (its ``Retry-After``); 0 when free."""
        return max(0.0, self._hold_until - self.monotonic())

    def why_paused(self) -> str | None:
        """Why this direction is paused (bad credentials, or an operator), as ``/readyz`` says it; None if not."""
        return self.auth_paused or self.operator_paused

    def why_not(self) -> str | None:
        """Why this direction may not send a full round now, as of what is known without reading the ledger;
        None: it may (while the credentials are refused it still sends one row at a time, as a probe)."""
        if self.operator_paused:
            return f"paused by an operator: {self.operator_paused}"
        if self.outage:
            return f"ledger unavailable: {self.outage[1]}"
        if held := self.held():
            return f"the upstream asked to wait {held:.0f} s (Retry-After)"
        if self.auth_paused:
            return f"credentials refused: {self.auth_paused}"
        return None

    def idle_seconds(self, idle: float) -> float:
        """How long to wait after a round with nothing done: the probe interval while the credentials are
        refused, otherwise ``idle``."""
        return self.probe_delay if self.auth_paused else idle

    def probe_every(self, seconds: float) -> None:
        """Probe refused credentials every ``seconds`` from now on (doubling from there while refused)."""
        self.probe_seconds = self.probe_delay = seconds

    # -- the operator's pause -------------------------------------------------------------------------------

    def recheck(self) -> None:
        """An operator paused or resumed a direction in this process: read the ledger again at the next check."""
        self._operator_checked = -OPERATOR_CHECK_SECONDS

    async def paused_by_operator(self) -> bool:
        """Whether an operator paused this direction (read from the ledger at most once a second, so a pause
        made on any replica stops them all)."""
        if self.monotonic() - self._operator_checked >= OPERATOR_CHECK_SECONDS:
            reason = await self.ledger.held_by_operator(self.direction)
            self._operator_checked = self.monotonic()
            if reason != self.operator_paused:
                log.warning("direction paused by an operator" if reason else "direction resumed by an operator",
                            extra={"direction": self.direction.value, "reason": reason or ""})
            self.operator_paused = reason
            self._show()
        return self.operator_paused is not None

    def _show(self) -> None:
        """``sync_direction_paused``: 1 while the credentials are refused or an operator paused the direction
        (the alert on it covers a pause forgotten after an incident too)."""
        paused = self.auth_paused or self.operator_paused
        self.metrics.paused.labels(direction=self.direction.value).set(1 if paused else 0)

    # -- what a round reports -------------------------------------------------------------------------------

    def hold(self, asked: float) -> None:
        """The upstream asked the whole direction to wait ``asked`` seconds (clamped to the maximum)."""
        wait = schedule.clamp_retry_after(asked)
        if wait >= schedule.MAX_RETRY_AFTER:
            log.warning("upstream asked to wait longer than the maximum; waiting the maximum",
                        extra={"direction": self.direction.value, "asked": asked, "wait": wait})
        self._hold_until = self.monotonic() + wait

    async def credentials(self, auth_error: str | None, now: datetime) -> None:
        """A round's verdict on the credentials: pause on a refusal, back off the probe while refused, resume
        (in the ledger too, for a pause an earlier process recorded) once a round is accepted."""
        direction = self.direction.value
        if auth_error and not self.auth_paused:
            log.error("upstream rejected the credentials; direction paused", extra={"direction": direction,
                                                                                  "error": auth_error})
            await self.ledger.pause(self.direction, auth_error, now)
        elif auth_error:
            self.probe_delay = min(self.probe_delay * 2, MAX_PROBE_SECONDS)
        elif self.auth_paused or self._stale_pause:
            if await self.ledger.resume(self.direction, now):
                log.warning("credentials accepted again; direction resumed", extra={"direction": direction})
            self.probe_delay = self.probe_seconds
        self._stale_pause = False
        self.auth_paused = auth_error
        self._show()

    # -- ledger outages -------------------------------------------------------------------------------------

    def ledger_down(self, error: str) -> None:
        """The ledger did not answer; the outage runs from the first such failure."""
        log.warning("ledger unavailable, delivery waits", extra={"direction": self.direction.value, "error": error})
        self.outage = self.outage or (self.clock(), error)

    async def ledger_up(self) -> None:
        """The ledger answers again: record the outage, so it does not count against retry windows."""
        if self.outage is None:
            return
        since, reason = self.outage
        span = Downtime(direction=self.direction, kind="ledger", reason=reason, started_at=since,
                        ended_at=self.clock())
        await self.ledger.add_downtime(span)
        self.outage = None
        log.warning("ledger reachable again; delivery resumed", extra={"direction": self.direction.value,
                                                                      "outage_seconds": (span.ended_at or since)
                                                                      .timestamp() - since.timestamp()})
