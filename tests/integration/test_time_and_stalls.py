"""SPEC section 4, "Time and stalls", on both databases (issue 19): leases judged by the database, never by a
process's clock; a stalled transaction or a slow ledger never hangs or kills the daemon; rows re-checked at send."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import people
from sync.app import Daemon
from sync.engine import remap
from sync.engine.worker import Failure, Results, Worker
from sync.errors import LedgerUnavailable
from sync.jobs import Jobs
from sync.ledger.store import Ledger, _lock_id, create_engine
from sync.ledger.timeouts import DatabaseTimeouts
from sync.metrics import Metrics
from sync.model import Claim, Direction, NewEvent, Remapped, Row, Status
from sync.sandbox import FakeIterable, FakeSegment, Fault
from tests.conftest import _reset_pg, started
from tests.reliability.conftest import BASIC
from tests.support import lapse_leases, make_config, wait_for

OUT = Direction.OUTBOUND


def event(key: str, user: str = "u1") -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="track", payload={"key": key}, user_key=user)


def claim(owner: str, limit: int = 10) -> Claim:
    return Claim(direction=OUT, owner=owner, limit=limit, lease_seconds=120)


class Gate:
    """A sink that holds every round until the test opens it; records what it was given."""

    direction = OUT
    batch_limit = 100

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def deliver(self, rows: Sequence[Row]) -> Results:
        self.sent += [row.key for row in rows]
        self.entered.set()
        await self.open.wait()
        return Results(delivered=[row.id for row in rows])


class Scripted:
    """One row a round (so the worker claims ahead); holds the round that sends ``hold`` until ``open`` is set,
    fails the first try of ``fail`` (retryable, due again shortly)."""

    direction = OUT
    batch_limit = 1

    def __init__(self, *, hold: str, fail: str = "") -> None:
        self.hold, self.fail = hold, fail
        self.sent: list[str] = []
        self.open = asyncio.Event()

    async def deliver(self, rows: Sequence[Row]) -> Results:
        self.sent += [row.key for row in rows]
        if any(row.key == self.hold for row in rows):
            await self.open.wait()
        failing = [row for row in rows if row.key == self.fail and self.sent.count(self.fail) == 1]
        return Results(delivered=[row.id for row in rows if row not in failing],
                       failed=[Failure(row_id=row.id, error="HTTP 500", retryable=True, wait=0.3) for row in failing])


class SteppedClock:
    def __init__(self) -> None:
        self.step = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.step


async def test_a_replica_whose_clock_runs_150_s_ahead_takes_no_row_another_holds(ledger: Ledger,
                                                                                 ledger_url: str) -> None:
    """Issue 19 item 1: with replica B's clock 150 s ahead of a 120 s lease, B re-sent A's rows."""
    await ledger.record([event("a", "u1"), event("b", "u2")], datetime.now(UTC))
    held = await ledger.claim(claim("replica-a"), datetime.now(UTC))
    assert [r.key for r in held] == ["a", "b"]
    # on PostgreSQL a second engine is another replica; SQLite has one process, so B is a sibling owner in it
    other = Ledger(create_engine(ledger_url)) if ledger.is_postgres else ledger
    try:
        ahead = datetime.now(UTC) + timedelta(seconds=150)
        assert await other.claim(claim("replica-b"), ahead) == []
        assert await other.reap_expired(ahead) == 0
    finally:
        if other is not ledger:
            await other.close()


async def test_a_clock_step_does_not_let_a_process_reap_its_own_in_flight_lease(ledger: Ledger,
                                                                                ledger_url: str) -> None:
    """Issue 19 item 1: a +200 s clock step during a long Iterable request let the process's own reaper take the
    in-flight lease back, and the event was sent twice."""
    await ledger.record([event("a")], datetime.now(UTC))
    clock, sink = SteppedClock(), Gate()
    worker = Worker(ledger, sink, Metrics(), owner="serve:outbound", max_retry_hours=72, lease_seconds=120,
                    clock=clock, idle_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(sink.entered.wait(), 10)
        clock.step = timedelta(seconds=200)
        jobs = Jobs(ledger, Metrics(), make_config(ledger_url=ledger_url), None, clock=clock)
        assert await jobs.reap_leases() == 0
        assert await ledger.claim(claim("serve:inbound-sibling"), clock()) == []
        sink.open.set()
        await wait_for(lambda: _status(ledger, "a", Status.DELIVERED))
    finally:
        sink.open.set()
        worker.stop()
        await task
    assert sink.sent == ["a"]


async def test_a_lease_left_by_a_process_that_died_returns_to_the_pool(ledger: Ledger, ledger_url: str) -> None:
    """The other side of item 1: a dead process's lease still ends (by the database's clock on PostgreSQL)."""
    await ledger.record([event("a")], datetime.now(UTC))
    dead = Ledger(create_engine(ledger_url))
    await dead.claim(Claim(direction=OUT, owner="died", limit=10, lease_seconds=1), datetime.now(UTC))
    await dead.close()
    await lapse_leases(ledger, 2)  # its second has passed by the database's terms, and by the process's clock:
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert await ledger.reap_expired(later) == 1
    assert [r.key for r in await ledger.claim(claim("alive"), later)] == ["a"]


async def test_a_stalled_replica_holding_a_lock_never_hangs_another_replicas_ingest(pg_url: str) -> None:
    """Issue 19 item 2: a replica stopped (SIGSTOP) inside a transaction held the people lock; another replica's
    ingest hung until its clients gave up. A lock wait now ends after ``lock_timeout`` (503), and the stalled
    session is closed by the server after ``idle_in_transaction_session_timeout``, its locks with it."""
    await _reset_pg(pg_url)
    stalled = create_engine(pg_url, DatabaseTimeouts(idle_in_transaction_seconds=1.5))
    live = Ledger(create_engine(pg_url, DatabaseTimeouts(lock_seconds=0.3)))
    conn = await stalled.connect()
    try:
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id("people"))))  # then it stops
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            await asyncio.wait_for(live.record([person("a")], datetime.now(UTC)), 5)
        assert time.monotonic() - started < 3
        await wait_for(lambda: _records(live, person("b")), within=10, interval=0.3)
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
        await stalled.dispose()
        await live.close()


async def test_a_ledger_out_of_connections_answers_503_and_the_daemon_lives_on(
        ledger_url: str, fake_iterable: tuple[FakeIterable, str], fake_segment: tuple[FakeSegment, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 19 item 3: with the pool exhausted ingest answered 500 and the worker died ("background task died
    ... QueuePool limit reached"), exit 1. Now: 503 with Retry-After, /readyz says why, delivery waits and goes
    on once connections are free."""
    config = make_config(ledger_url=ledger_url, iterable_url=fake_iterable[1], segment_url=fake_segment[1],
                         ledger={"pool_timeout_seconds": 0.2})
    fake_iterable[0].add_users(1, "k")
    caplog.set_level(logging.WARNING)
    async with started(config, ledger_url) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.address[1]}"
        held = await _exhaust(daemon.ledger)
        try:
            async with http.post(f"{base}/v1/track", json=_track("during"), headers=BASIC) as response:
                assert response.status == 503 and int(response.headers["Retry-After"]) > 0
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
            await wait_for(lambda: "ledger unavailable, delivery waits" in caplog.text)  # the worker's claims too
        finally:
            for conn in held:
                await conn.close()
        # the workers queued for the pool first (on SQLite, its one connection): once they are through
        await wait_for(lambda: caplog.text.count("delivery resumed") == len(daemon.workers))
        async with http.post(f"{base}/v1/track", json=_track("after"), headers=BASIC) as response:
            assert response.status == 200
        await wait_for(lambda: any(body.get("id") == "after" for _, body in _events(fake_iterable[0])))
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
        assert not any(task.done() for task in daemon.tasks)


async def _exhaust(ledger: Ledger) -> list[AsyncConnection]:
    held = []
    with contextlib.suppress(sa.exc.TimeoutError):
        while True:
            held.append(await ledger.engine.connect())
    return held


def _track(message_id: str, user: str = "k0") -> dict[str, object]:
    return {"userId": user, "event": "Stall", "messageId": message_id}


def _events(fake: FakeIterable) -> list[tuple[str, dict[str, Any]]]:
    return [(endpoint, item) for endpoint, body in fake.requests if endpoint == "events/trackBulk"
            for item in body.get("events", [])] + [(e, b) for e, b in fake.requests if e == "events/track"]


def person(key: str) -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="identify", payload={}, identities=people.of(f"{key}-user", None))


async def _records(ledger: Ledger, row: NewEvent) -> bool:
    try:
        await ledger.record([row], datetime.now(UTC))
    except LedgerUnavailable:
        return False
    return True


async def test_a_row_claimed_ahead_and_forgotten_by_a_deletion_meanwhile_is_not_sent(ledger: Ledger) -> None:
    """Issue 19 item 4: replica B accepted a deletion while replica A held the person's later event in its claim
    made ahead; Iterable received the DELETE, then that event."""
    await ledger.record([event("x", "someone"), ident("later", "user:p")], datetime.now(UTC))
    sink = Scripted(hold="x")
    async with working(ledger, sink):
        await wait_for(lambda: _leased(ledger, "later"))  # claimed ahead while "x" is being sent
        await ledger.record([replace(ident("delete", "user:p"), kind="delete", forgets=True)], datetime.now(UTC))
        sink.open.set()
        await wait_for(lambda: _status(ledger, "delete", Status.DELIVERED))
    assert sink.sent == ["x", "delete"]
    assert (await ledger.get(OUT, "later")).status is Status.SKIPPED  # type: ignore[union-attr]


async def test_a_failed_row_holds_back_its_person_after_a_merge_too(ledger: Ledger) -> None:
    """Issue 19 item 5: an identify by userId alone (OLD) failed while the next identify, naming the userId and
    the email the person was known by, merged the two and was claimed ahead: it overtook OLD."""
    await ledger.record([ident("known", "email:p@example.com")], datetime.now(UTC))
    await ledger.record([event("x", "someone"), ident("old", "user:p")], datetime.now(UTC))
    sink = Scripted(hold="x", fail="old")
    async with working(ledger, sink):
        await wait_for(lambda: _leased(ledger, "old"))  # claimed ahead (under "user:p") while "x" is sent
        await ledger.record([ident("new", "user:p", "email:p@example.com")], datetime.now(UTC))  # merges
        sink.open.set()
        await wait_for(lambda: _status(ledger, "new", Status.DELIVERED))
    assert sink.sent == ["known", "x", "old", "old", "new"]


async def test_a_row_being_sent_is_not_decided_again(ledger: Ledger) -> None:
    """Issue 19 item 4: ``ledger retry --remap`` on a row whose first try was in flight sent it twice (as the old
    and the new call). A claimed row keeps its call; the remap is refused."""
    await ledger.record([event("a")], datetime.now(UTC))
    (row,) = await ledger.claim(claim("serve"), datetime.now(UTC))
    change = Remapped(id=row.id, was=Status.PENDING, status=Status.PENDING, mapped={"endpoint": "x"},
                      mapping_digest="new", reason=None)
    assert await ledger.remap([change], datetime.now(UTC)) == 0
    assert isinstance(remap.remap(row, event("a")), str)


async def test_a_429_on_one_endpoint_holds_that_endpoint_only(daemon: Daemon,
                                                               fake_iterable: tuple[FakeIterable, str]) -> None:
    """Issue 19 item 6: a Retry-After on `events/trackBulk` held the whole outbound direction; an identify sent
    right after waited as long. Now it holds that endpoint (and the row's person) alone, at most 120 s."""
    fake, _ = fake_iterable
    fake.add_users(3, "r")
    fake.faults.add(Fault(endpoint="events/trackBulk", status=429, retry_after="60"))
    base = f"http://127.0.0.1:{daemon.address[1]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/track", json=_track("held", "r0"), headers=BASIC) as response:
            assert response.status == 200
        await wait_for(lambda: any(endpoint == "events/trackBulk" for endpoint, _ in fake.hits))
        async with http.post(f"{base}/v1/identify", json={"userId": "r1", "messageId": "other", "traits": {"a": 1}},
                             headers=BASIC) as response:
            assert response.status == 200
        async with http.post(f"{base}/v1/track", json=_track("same-endpoint", "r2"), headers=BASIC) as response:
            assert response.status == 200
        await wait_for(lambda: _status(daemon.ledger, "other", Status.DELIVERED), within=5)
        await wait_for(lambda: _put_off(daemon.ledger, "same-endpoint", timedelta(seconds=50)), within=5)
    assert [endpoint for endpoint, _ in fake.hits].count("events/trackBulk") == 1  # held: not asked again
    row = await daemon.ledger.get(OUT, "held")
    assert row is not None and row.next_attempt_at >= datetime.now(UTC) + timedelta(seconds=50)


@contextlib.asynccontextmanager
async def working(ledger: Ledger, sink: Any) -> AsyncIterator[Worker]:
    worker = Worker(ledger, sink, Metrics(), owner="serve:outbound", max_retry_hours=72, lease_seconds=120,
                    idle_seconds=0.02, retry_base=0.05)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        sink.open.set()
        worker.stop()
        await task


def ident(key: str, *identifiers: str) -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="identify", payload={}, identities=identifiers)


async def _leased(ledger: Ledger, key: str) -> bool:
    row = await ledger.get(OUT, key)
    return row is not None and row.lease_owner is not None


async def _put_off(ledger: Ledger, key: str, at_least: timedelta) -> bool:
    """The worker took the row, tried it and put it off by ``at_least`` (its lease given back)."""
    row = await ledger.get(OUT, key)
    return (row is not None and row.status is Status.PENDING and row.attempts >= 1 and row.lease_owner is None
            and row.next_attempt_at >= datetime.now(UTC) + at_least)


async def _status(ledger: Ledger, key: str, status: Status) -> bool:
    row = await ledger.get(OUT, key)
    return row is not None and row.status is status


def _settling(config: Any, seconds: float) -> Any:
    return replace(config, iterable=replace(config.iterable, queue_settle_seconds=seconds))


async def test_a_subscription_change_after_a_bulk_identify_goes_in_the_bulk_queue_without_waiting(
        stack_config: Any, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Issue 19 item 7: a person whose identify went through `users/bulkUpdate` had their subscription change
    (`users/updateSubscriptions`, the single queue) held for Iterable's 60 s buffer. Iterable offers the same
    call in bulk (`users/bulkUpdateSubscriptions`): it goes there, behind the identify, at once."""
    fake, _ = fake_iterable
    first = {"type": "identify", "userId": "q1", "messageId": "q-1", "traits": {"email": "q1@example.com"}}
    later = {"type": "identify", "userId": "q1", "messageId": "q-2", "traits": {"plan": "pro", "emailListIds": [3]}}
    async with started(_settling(stack_config, 60.0), ledger_url) as daemon:
        assert (await _post(daemon, first)) == 200
        await wait_for(lambda: _status(daemon.ledger, "q-1", Status.DELIVERED))
        assert (await _post(daemon, later)) == 200
        await wait_for(lambda: _delivered_all(daemon), within=10)
        await wait_for(lambda: fake.idle)
    assert fake.subscription_events == [{"userId": "q1", "emailListIds": [3]}]
    assert [e for e, _ in fake.requests] == ["users/bulkUpdate", "users/bulkUpdate", "users/bulkUpdateSubscriptions"]
    assert {queue for queue, _ in fake.project.applied} == {"bulk"}  # one queue: in order


async def test_a_profile_update_after_a_token_registration_follows_it_in_the_single_queue_without_waiting(
        stack_config: Any, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Issue 19 item 7: an identify that registers a device token (a single call) must not hold the person's
    next `users/update` for 60 s: it goes as a single call too."""
    from sync.config import PushConfig

    fake, _ = fake_iterable
    config = _settling(stack_config, 60.0)
    config = replace(config, iterable=replace(config.iterable, push=PushConfig(gcm_application_name="com.example")))
    first = {"type": "identify", "userId": "t1", "messageId": "t-1", "traits": {"email": "t1@example.com"},
             "context": {"device": {"token": "fcm-1", "type": "android"}}}
    later = {"type": "identify", "userId": "t1", "messageId": "t-2", "traits": {"plan": "pro"}}
    async with started(config, ledger_url) as daemon:
        assert (await _post(daemon, first)) == 200
        await wait_for(lambda: _delivered_all(daemon))
        assert (await _post(daemon, later)) == 200
        await wait_for(lambda: _delivered_all(daemon), within=10)
        await wait_for(lambda: fake.idle)
    assert [e for e, _ in fake.requests] == ["users/update", "users/registerDeviceToken", "users/update"]
    user = fake.find_user(user_id="t1")
    assert user is not None and user["dataFields"]["plan"] == "pro" and user["devices"]


async def _post(daemon: Daemon, event: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{daemon.address[1]}/v1/batch", json={"batch": [event]}, headers=BASIC) as response:
        return response.status


async def _delivered_all(daemon: Daemon) -> bool:
    counts = (await daemon.ledger.stats()).counts
    return not counts.get(("outbound", "pending")) and counts.get(("outbound", "delivered"), 0) > 0


async def test_the_fake_takes_bulk_subscription_updates_by_the_public_docs(
        fake_iterable: tuple[FakeIterable, str]) -> None:
    """The stand-in's own reading of `POST /api/users/bulkUpdateSubscriptions`: `updateSubscriptionsRequests`
    required; each item named like a single call; list fields are arrays of numbers; refused items are listed
    under `invalidEmails` / `invalidUserIds` and the rest go through the bulk queue."""
    fake, url = fake_iterable
    headers = {"Api-Key": fake.api_key}
    items = [{"userId": "s1", "emailListIds": [1]}, {"userId": "s2", "emailListIds": ["one"]},
             {"email": "not an email", "unsubscribedChannelIds": [2]}]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/users/bulkUpdateSubscriptions", json={}, headers=headers) as response:
            assert response.status == 400
        async with http.post(f"{url}/api/users/bulkUpdateSubscriptions", headers=headers,
                             json={"updateSubscriptionsRequests": items}) as response:
            assert response.status == 200
            answer = await response.json()
    assert answer == {"successCount": 1, "failCount": 2, "invalidEmails": ["not an email"], "invalidUserIds": ["s2"],
                      "validEmailFailures": [], "validUserIdFailures": []}
    fake.process(everything=True)
    assert fake.subscription_events == [{"userId": "s1", "emailListIds": [1]}]
    assert fake.project.applied[-1] == ("bulk", "users/bulkUpdateSubscriptions")
