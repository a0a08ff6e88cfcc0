"""The delivery engine and group commit on the in-memory ledger: fast, no I/O (issue 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sync.engine.intake import GroupCommit
from sync.engine.worker import Failure, Results, Worker
from sync.errors import LedgerUnavailable, Overloaded
from sync.ledger.memory import MemoryLedger
from sync.metrics import Metrics
from sync.model import Claim, Direction, Downtime, NewEvent, Row, Settlement, Status

OUT = Direction.OUTBOUND
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def event(key: str, user: str = "u") -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="track", payload={"k": key}, user_key=user)


class Sink:
    """A scripted sink: each call pops the next behaviour (``deliver``, ``raise``, a Failure factory)."""

    direction = OUT
    batch_limit = 100

    def __init__(self, *script: object, delay: float = 0.0) -> None:
        self.script, self.delay = list(script), delay
        self.calls: list[list[str]] = []

    async def deliver(self, rows: Sequence[Row]) -> Results:
        self.calls.append([row.key for row in rows])
        await asyncio.sleep(self.delay)
        step = self.script.pop(0) if self.script else "deliver"
        if step == "raise":
            raise RuntimeError("a bug in the sink")
        if callable(step):
            return Results(failed=[step(row) for row in rows])
        if isinstance(step, str) and step.startswith("auth"):
            return Results(auth_error="HTTP 401")
        return Results(delivered=[row.id for row in rows])


def worker(ledger: MemoryLedger, sink: Sink, owner: str = "w1", **kw: object) -> Worker:
    defaults: dict[str, object] = {"max_retry_hours": 72, "lease_seconds": 60, "idle_seconds": 0.01,
                                   "probe_seconds": 0.01, "retry_base": 0.01}
    return Worker(ledger, sink, Metrics(), owner=owner, **{**defaults, **kw})  # type: ignore[arg-type]


async def test_a_settle_only_touches_rows_the_settling_process_still_owns() -> None:
    ledger = MemoryLedger()
    await ledger.record([event("a")], T0)
    slow = await ledger.claim(Claim(direction=OUT, owner="slow", limit=10, lease_seconds=1), T0)
    later = T0 + timedelta(seconds=2)  # the slow owner's lease ran out; another process claims the row
    fast = await ledger.claim(Claim(direction=OUT, owner="fast", limit=10, lease_seconds=60), later)
    assert [r.id for r in fast] == [r.id for r in slow]
    await ledger.settle(Settlement(released=(slow[0].id,)), later, owner="slow")
    row = ledger.table[slow[0].id]
    assert row.lease_owner == "fast" and row.status is Status.PENDING  # the slow one did not wipe the lease


async def test_a_round_longer_than_the_lease_keeps_its_rows() -> None:
    """Issue 10 item 1: a 1 s round with a 0.3 s lease; another worker must not get the same rows."""
    ledger = MemoryLedger()
    await ledger.record([event(f"e{i}", user=f"u{i}") for i in range(5)], datetime.now(UTC))
    slow_sink, other_sink = Sink(delay=1.0), Sink()
    slow = worker(ledger, slow_sink, "slow", lease_seconds=0.3)
    other = worker(ledger, other_sink, "other", lease_seconds=0.3)
    first = asyncio.create_task(slow.round())
    await asyncio.sleep(0.6)  # two lease lengths into the slow round
    assert await other.round() is False and other_sink.calls == []
    assert await first is True
    assert {row.status for row in ledger.table.values()} == {Status.DELIVERED}


async def test_an_exception_inside_a_round_releases_its_rows_and_the_worker_goes_on() -> None:
    ledger = MemoryLedger()
    await ledger.record([event("a")], datetime.now(UTC))
    sink = Sink("raise", "deliver")
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    for _ in range(200):
        if ledger.table[1].status is Status.DELIVERED:
            break
        await asyncio.sleep(0.01)
    w.stop()
    await task
    assert ledger.table[1].status is Status.DELIVERED and ledger.table[1].attempts == 1
    assert len(sink.calls) == 2


async def test_an_infinite_retry_after_neither_kills_the_worker_nor_stalls_it_for_days() -> None:
    ledger = MemoryLedger()
    await ledger.record([event("a")], datetime.now(UTC))
    sink = Sink(lambda row: Failure(row_id=row.id, error="HTTP 429", retryable=True, retry_after=float("inf")))
    w = worker(ledger, sink)
    assert await w.round() is True
    assert 0 < w.gate.held() <= 3600
    assert ledger.table[1].status is Status.PENDING and ledger.table[1].next_attempt_at < datetime.now(UTC) + \
        timedelta(hours=2)


async def test_time_paused_does_not_count_against_the_retry_window() -> None:
    """Issue 10 item 3: 100 h after receipt, 40 h of them paused, the first 429 is retried, not dead."""
    now = T0 + timedelta(hours=100)
    ledger = MemoryLedger()
    await ledger.record([event("a")], T0)
    await ledger.add_downtime(Downtime(direction=OUT, kind="paused", reason="HTTP 401", started_at=T0 +
                                       timedelta(hours=10), ended_at=T0 + timedelta(hours=50)))
    sink = Sink(lambda row: Failure(row_id=row.id, error="HTTP 429", retryable=True))
    assert await worker(ledger, sink, clock=lambda: now).round() is True
    assert ledger.table[1].status is Status.PENDING and ledger.table[1].attempts == 1
    unpaused = MemoryLedger()
    await unpaused.record([event("a")], T0)
    await worker(unpaused, Sink(lambda row: Failure(row_id=row.id, error="HTTP 429", retryable=True)),
                 clock=lambda: now).round()
    assert unpaused.table[1].status is Status.DEAD  # the same row without the pause: past its window


async def test_a_pause_recorded_before_a_restart_is_closed_by_the_first_success() -> None:
    """Issue 10 item 7: a stale pause row kept `ledger stats` showing PAUSED forever."""
    ledger = MemoryLedger()
    await ledger.pause(OUT, "HTTP 401 from an earlier process", T0)
    await ledger.record([event("a")], datetime.now(UTC))
    assert await worker(ledger, Sink()).round() is True
    assert [s.ended_at is not None for s in ledger.spans] == [True]


async def test_a_ledger_outage_is_recorded_as_downtime_once_it_answers_again() -> None:
    ledger = MemoryLedger()
    failing = {"on": True}
    real_claim = ledger.claim

    async def claim(claim: Claim, now: datetime) -> list[Row]:
        if failing["on"]:
            raise LedgerUnavailable("ledger unavailable: connection refused")
        return await real_claim(claim, now)

    ledger.claim = claim  # type: ignore[method-assign]
    w = worker(ledger, Sink())
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.1)
    failing["on"] = False
    for _ in range(100):
        if ledger.spans:
            break
        await asyncio.sleep(0.01)
    w.stop()
    await task
    assert [s.kind for s in ledger.spans] == ["ledger"] and "connection refused" in ledger.spans[0].reason


class Refusing:
    """A ledger that refuses any commit containing a row keyed ``poison`` (a database data error)."""

    def __init__(self) -> None:
        self.inner = MemoryLedger()
        self.commits = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def record(self, batch: Sequence[NewEvent], now: datetime) -> set[str]:
        self.commits += 1
        await self.gate.wait()
        if any(e.key == "poison" for e in batch):
            raise LedgerUnavailable("ledger unavailable: invalid input for type json", outage=False)  # refused values
        return await self.inner.record(batch, now)


async def test_a_group_commit_that_fails_for_one_request_does_not_fail_the_others() -> None:
    """Issue 10 item 5: one request's poison made every request sharing its commit answer 503."""
    ledger = Refusing()
    commits = GroupCommit(ledger, lambda: T0)
    ledger.gate.clear()
    blocker = asyncio.create_task(commits.record([event("first")]))
    await asyncio.sleep(0.01)  # the first commit is running; the next three share the following one
    tasks = [asyncio.create_task(commits.record([event(key)])) for key in ("good-1", "poison", "good-2")]
    await asyncio.sleep(0.01)
    ledger.gate.set()
    await blocker
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == set() and outcomes[2] == set()
    assert isinstance(outcomes[1], LedgerUnavailable)
    assert await ledger.inner.get(OUT, "good-1") and await ledger.inner.get(OUT, "good-2")
    assert await ledger.inner.get(OUT, "poison") is None


async def test_ingest_is_refused_quickly_when_too_much_waits_for_the_ledger() -> None:
    """Issue 10 item 14: with the ledger stuck, queued rows stay bounded and the excess gets Overloaded."""
    ledger = Refusing()
    commits = GroupCommit(ledger, lambda: T0, max_queued=250)
    ledger.gate.clear()
    first = asyncio.create_task(commits.record([event("stuck")]))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(commits.record([event(f"q{i}-{n}") for n in range(100)])) for i in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await asyncio.wait_for(commits.record([event(f"x{n}") for n in range(100)]), 0.5)
    ledger.gate.set()
    await first
    assert all(r == set() for r in await asyncio.gather(*queued))
    assert len(ledger.inner.table) == 201


async def test_the_first_copy_of_a_message_id_in_one_batch_wins() -> None:
    """Issue 10 item 6 (the memory ledger keeps the store's semantics; the contract suite checks the store)."""
    ledger = MemoryLedger()
    valid = event("m1")
    invalid = NewEvent(direction=OUT, key="m1", kind="track", payload={}, status=Status.REJECTED, reason="bad")
    assert await ledger.record([valid, invalid], T0) == set()
    row = await ledger.get(OUT, "m1")
    assert row is not None and row.status is Status.PENDING


class Counting(MemoryLedger):
    """Records what the ledger was asked while a sink was sending."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = False
        self.claims_while_sending = 0

    async def claim(self, claim: Claim, now: datetime) -> list[Row]:
        self.claims_while_sending += self.sending
        return await super().claim(claim, now)


async def test_the_next_claim_is_made_while_a_round_sends() -> None:
    """Issue 13: claim, send and settle overlap, so upstream latency and ledger time do not add up."""
    ledger = Counting()
    await ledger.record([event(f"e{n}", user=f"u{n % 7}") for n in range(250)], datetime.now(UTC))

    class Watched(Sink):
        async def deliver(self, rows: Sequence[Row]) -> Results:
            ledger.sending = True
            try:
                return await super().deliver(rows)
            finally:
                ledger.sending = False

    sink = Watched(delay=0.05)
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    await _until(lambda: all(r.status is Status.DELIVERED for r in ledger.table.values()))
    w.stop()
    await task
    assert ledger.claims_while_sending >= 2
    sent = [key for call in sink.calls for key in call]
    assert sorted(sent) == sorted(f"e{n}" for n in range(250))  # each once
    for user in range(7):  # and each person's in order
        mine = [int(k[1:]) for k in sent if int(k[1:]) % 7 == user]
        assert mine == sorted(mine)


async def test_a_failure_holds_back_that_persons_rows_already_claimed_for_the_next_round() -> None:
    """Issue 13: the claim made ahead took u's later rows; u's earlier row failed, so they go back and wait."""
    ledger = MemoryLedger()
    await ledger.record([event(f"a{n}", user="u") for n in range(3)], datetime.now(UTC))
    fail_first = 0

    class OneFailure(Sink):
        batch_limit = 1

        async def deliver(self, rows: Sequence[Row]) -> Results:
            nonlocal fail_first
            self.calls.append([row.key for row in rows])
            await asyncio.sleep(0.02)
            if rows[0].key == "a0" and fail_first == 0:
                fail_first += 1
                return Results(failed=[Failure(row_id=rows[0].id, error="HTTP 503", retryable=True, wait=0.2)])
            return Results(delivered=[row.id for row in rows])

    sink = OneFailure()
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    await _until(lambda: all(r.status is Status.DELIVERED for r in ledger.table.values()))
    w.stop()
    await task
    delivered = [call[0] for call in sink.calls]
    assert delivered[0] == "a0"
    assert delivered[1:] == ["a0", "a1", "a2"]  # a1 was claimed ahead while a0 failed: it waited for a0


async def test_a_row_the_sink_did_not_try_holds_back_that_persons_rows_claimed_for_the_next_round() -> None:
    """Issue 19: the Iterable sink leaves out a person who does not fit in the round's full bulk requests; their
    rows go back untried, and their later rows, already claimed ahead, must not go before them."""
    ledger = MemoryLedger()
    await ledger.record([event(f"a{n}", user="u") for n in range(3)], datetime.now(UTC))
    left_out = 0

    class LeavesOneOut(Sink):
        batch_limit = 1

        async def deliver(self, rows: Sequence[Row]) -> Results:
            nonlocal left_out
            self.calls.append([row.key for row in rows])
            await asyncio.sleep(0.02)
            if rows[0].key == "a0" and left_out == 0:
                left_out += 1
                return Results()  # not tried: released as it was
            return Results(delivered=[row.id for row in rows])

    sink = LeavesOneOut()
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    await _until(lambda: all(r.status is Status.DELIVERED for r in ledger.table.values()))
    w.stop()
    await task
    assert [call[0] for call in sink.calls] == ["a0", "a0", "a1", "a2"]
    assert all(row.attempts == 1 for row in ledger.table.values())  # leaving a row out is not an attempt


async def _until(predicate: object, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_claim_made_ahead_waits_for_the_last_settlement_instead_of_idling() -> None:
    """Issue 19: the claim made ahead ran before the previous round's settlement was written, so that round's
    person still looked busy, the claim came back empty and the worker idled with their next row due."""

    class SlowSettle(MemoryLedger):
        async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
            await asyncio.sleep(0.05)
            await super().settle(settlement, now, owner=owner)

    ledger = SlowSettle()
    await ledger.record([event(f"a{n}", user="u") for n in range(6)], datetime.now(UTC))

    class OneAtATime(Sink):
        batch_limit = 1

    w = worker(ledger, OneAtATime(delay=0.01), idle_seconds=0.5)
    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(w.run())
    await _until(lambda: all(r.status is Status.DELIVERED for r in ledger.table.values()))
    elapsed = asyncio.get_running_loop().time() - started
    w.stop()
    await task
    assert elapsed < 1.0  # six rounds of ~60 ms; each idle would add 0.5 s


async def test_rows_going_back_behind_a_failure_do_not_delay_the_next_round() -> None:
    """Issue 19: the round after a failure gave back the failed person's rows claimed ahead before sending:
    it waited for the last settlement, then for the release, with everyone else's rows due. Now the release
    follows the settlement in the background and the round sends at once."""

    class SlowSettle(MemoryLedger):
        async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
            await asyncio.sleep(0.3)
            await super().settle(settlement, now, owner=owner)

    ledger = SlowSettle()
    await ledger.record([event("p1", user="p"), event("q1", user="q"), event("p2", user="p"), event("q2", user="q")],
                        datetime.now(UTC))
    started: list[float] = []
    ended: list[float] = []

    class FailsP1(Sink):
        batch_limit = 2

        async def deliver(self, rows: Sequence[Row]) -> Results:
            started.append(asyncio.get_running_loop().time())
            self.calls.append([row.key for row in rows])
            await asyncio.sleep(0.01)
            ended.append(asyncio.get_running_loop().time())
            failed = [Failure(row_id=r.id, error="HTTP 503", retryable=True, wait=0.2) for r in rows if r.key == "p1"]
            return Results(delivered=[r.id for r in rows if r.key != "p1"], failed=failed)

    sink = FailsP1()
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    await _until(lambda: len(sink.calls) >= 2)
    w.stop()
    await task
    assert sink.calls[:2] == [["p1", "q1"], ["q2"]]  # p2 went back behind p1
    assert started[1] - ended[0] < 0.25  # not after the 0.3 s settlement and a 0.3 s release
    assert ledger.table[3].status is Status.PENDING and ledger.table[3].lease_owner is None  # p2 given back


class FailsOnce(MemoryLedger):
    """A ledger whose first write of one kind (a release alone, or a round's outcome) fails as an outage does."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.failed = kind, False

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
        release = bool(settlement.released) and not settlement.delivered and not settlement.retry
        if not self.failed and (release if self.kind == "release" else bool(settlement.delivered)):
            self.failed = True
            raise LedgerUnavailable("ledger unavailable: connection reset")
        await super().settle(settlement, now, owner=owner)


class FirstTriesFail(Sink):
    """Fails the first try of the keys given (retryable), delivers everything else; ``ok`` in delivery order."""

    batch_limit = 2

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing, self.ok, self.tries = set(failing), [], {}  # type: ignore[var-annotated]

    async def deliver(self, rows: Sequence[Row]) -> Results:
        self.calls.append([row.key for row in rows])
        await asyncio.sleep(0.01)
        failed = []
        for row in rows:
            self.tries[row.key] = self.tries.get(row.key, 0) + 1
            if self.tries[row.key] == 1 and row.key in self.failing:
                failed.append(Failure(row_id=row.id, error="HTTP 503", retryable=True, wait=0.05))
        bad = {f.row_id for f in failed}
        self.ok += [row.key for row in rows if row.id not in bad]
        return Results(delivered=[row.id for row in rows if row.id not in bad], failed=failed)


async def _through_one_outage(kind: str, sink: FirstTriesFail) -> None:
    ledger = FailsOnce(kind)
    await ledger.record([event("p1", user="p"), event("q1", user="q"), event("p2", user="p"), event("q2", user="q"),
                         event("q3", user="q")], datetime.now(UTC))
    w = worker(ledger, sink, lease_seconds=0.5)
    task = asyncio.create_task(w.run())
    await _until(lambda: all(r.status is Status.DELIVERED for r in ledger.table.values()))
    await asyncio.sleep(1.0)  # two lease lengths: a row whose outcome was lost would go out again
    w.stop()
    await task
    assert ledger.failed


@pytest.mark.parametrize("kind", ["release", "outcome"])
async def test_a_write_the_ledger_refuses_once_is_written_again_and_nothing_goes_out_twice(kind: str) -> None:
    """A release (rows claimed ahead given back behind p1's failure) or a round's outcome that met a ledger
    outage was lost: the round after it had already gone out, its outcome was dropped with the error, and its
    rows went out again when their leases ran out. Written again, each row goes out once."""
    sink = FirstTriesFail("p1")
    await _through_one_outage(kind, sink)
    sent = [key for call in sink.calls for key in call]
    assert sorted(sent) == ["p1", "p1", "p2", "q1", "q2", "q3"], sink.calls


async def test_a_lost_release_does_not_let_a_persons_later_row_overtake_a_failed_one() -> None:
    """The same outage while q2 fails: q3, claimed ahead behind q2, must not be delivered before it."""
    sink = FirstTriesFail("p1", "q2")
    await _through_one_outage("release", sink)
    assert [key for key in sink.ok if key.startswith("q")] == ["q1", "q2", "q3"], sink.calls
    assert [key for key in sink.ok if key.startswith("p")] == ["p1", "p2"], sink.calls


async def test_the_probe_after_refused_credentials_is_not_hidden_by_a_person_waiting_for_a_retry() -> None:
    """An operator's report: after a 401, Iterable got no request for minutes after the key worked again. The
    probe claimed one row, the oldest due, which waited behind its person's retry: the claim came back empty
    until that retry was due. The probe looks further now, and the direction resumes at once."""
    ledger = MemoryLedger()
    now = datetime.now(UTC)
    await ledger.record([event("a1", user="a"), event("a2", user="a"), event("b1", user="b")], now)
    ledger.table[1] = replace(ledger.table[1], next_attempt_at=now + timedelta(hours=1))  # a1 waits for its retry
    sink = Sink("auth")  # the first round meets a refused key; the key works again after it
    w = worker(ledger, sink)
    task = asyncio.create_task(w.run())
    await _until(lambda: ledger.table[3].status is Status.DELIVERED, within=5)
    w.stop()
    await task
    assert sink.calls == [["b1"], ["b1"]]  # refused, then the probe that found the key working
    assert w.paused is None and ledger.table[2].status is Status.PENDING  # a2 still waits behind a1
