"""Correct under stress (issue 10), on the real ledgers and over real HTTP: leases that outlive a
slow round, one order per person, downtime outside the retry window, hostile input and upstream
answers, backfill resume, probes that cost O(1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from sync import people
from sync.app import Daemon, iterable_client
from sync.config import Config
from sync.engine.intake import Intake
from sync.engine.worker import Worker
from sync.inbound.export import ExportPuller
from sync.iterable.sink import IterableSink
from sync.ledger.store import Ledger
from sync.metrics import Metrics
from sync.model import Claim, Direction, NewEvent, Settlement, Status
from sync.outbound.mapper import Options
from sync.sandbox import FakeIterable
from tests.integration.test_outbound import BASIC, post, url
from tests.support import SHARED_SECRET, sign, wait_for

OUT = Direction.OUTBOUND
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def purchase(n: int, user: str) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": user, "messageId": f"p-{n}",
            "properties": {"order_id": f"o-{n}", "total": n}, "timestamp": f"2026-01-01T00:00:{n:02d}Z"}


async def test_two_replicas_with_a_round_longer_than_the_lease_deliver_each_row_once_in_order(
        ledger: Ledger, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Item 1: single calls at 0.15 s each make a 2.4 s round against a 0.6 s lease. Without renewal
    the second replica claims the same rows mid-round and both send them."""
    fake, base = fake_iterable
    fake.enforce_rate_limits = False
    fake.faults.latency = 0.15
    events = [purchase(n, f"buyer{n % 3}") for n in range(16)]
    from sync.engine.intake import outbound_rows

    rows, _ = outbound_rows(events, Options())
    await ledger.record(rows, datetime.now(UTC))
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        config = _config(base)
        workers = [Worker(ledger, IterableSink(iterable_client(config, session, metrics)), metrics,
                          owner=name, max_retry_hours=72, lease_seconds=0.6, idle_seconds=0.05)
                   for name in ("replica-a", "replica-b")]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await wait_for(lambda: _all(ledger, Status.DELIVERED, 16), within=30)
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    sent = [body["id"] for endpoint, body in fake.requests if endpoint == "commerce/trackPurchase"]
    assert sorted(sent) == sorted(f"o-{n}" for n in range(16))  # each once: no replica re-sent a leased row
    for buyer in range(3):
        mine = [int(i.split("-")[1]) for i in sent if int(i.split("-")[1]) % 3 == buyer]
        assert mine == sorted(mine)


def _config(base: str) -> Config:
    from tests.support import make_config

    return make_config(ledger_url="sqlite:///unused.db", iterable_url=base,
                       iterable={"rate_limits": {"export/data.json": 100}})


async def _all(ledger: Ledger, status: Status, count: int) -> bool:
    return sum(n for (_, s), n in (await ledger.stats()).counts.items() if s == status) == count


def person_event(key: str, *identities: str | None) -> NewEvent:
    return NewEvent(direction=OUT, key=key, kind="track", payload={}, identities=people.of(*identities))


async def test_identifiers_of_one_person_share_one_order_across_an_alias(ledger: Ledger) -> None:
    """Item 2: userId u1 (with old@x), a track naming only new@x, then an alias old@x -> new@x."""
    await ledger.record([person_event("identify", "u:u1", "e:old@x.io")], T0)
    await ledger.record([person_event("track-new", "e:new@x.io")], T0)
    first = await ledger.get(OUT, "identify")
    new = await ledger.get(OUT, "track-new")
    assert first and new and first.user_key == "u:u1" and new.user_key == "e:new@x.io"
    await ledger.record([person_event("alias", "e:new@x.io", "e:old@x.io")], T0)
    await ledger.record([person_event("track-u1", "u:u1"), person_event("track-email", "e:old@x.io")], T0)
    keys = {k: (await ledger.get(OUT, k)).user_key for k in  # type: ignore[union-attr]
            ("identify", "track-new", "alias", "track-u1", "track-email")}
    assert len(set(keys.values())) == 1, keys
    (head,) = await ledger.claim(Claim(direction=OUT, owner="w", limit=1, lease_seconds=30), T0)
    assert head.key == "identify"
    await ledger.settle(Settlement(retry=((head.id, T0 + timedelta(minutes=5), "HTTP 500"),)), T0, owner="w")
    assert await ledger.claim(Claim(direction=OUT, owner="w", limit=10, lease_seconds=30), T0) == []


async def test_a_requeue_keeps_the_receive_time_and_restarts_the_retry_window(ledger: Ledger) -> None:
    """Item 7: requeueing overwrote received_at."""
    await ledger.record([NewEvent(direction=OUT, key="a", kind="track", payload={}, user_key="u")], T0)
    (row,) = await ledger.claim(Claim(direction=OUT, owner="w", limit=1, lease_seconds=30), T0)
    await ledger.settle(Settlement(dead=((row.id, "gave up"),)), T0, owner="w")
    later = T0 + timedelta(days=4)
    assert await ledger.requeue(later, ids=[row.id]) == 1
    again = await ledger.get(OUT, "a")
    assert again is not None and again.received_at == T0 and again.retry_from == later


async def test_pauses_are_spans_closed_by_resume_and_listed_as_downtime(ledger: Ledger) -> None:
    await ledger.pause(OUT, "HTTP 401", T0)
    await ledger.pause(OUT, "HTTP 401 again", T0 + timedelta(minutes=1))  # one open span, not two
    assert (await ledger.stats()).paused == {"outbound": "HTTP 401"}
    assert await ledger.resume(OUT, T0 + timedelta(hours=2)) == 1
    assert (await ledger.stats()).paused == {}
    (span,) = await ledger.downtime(OUT, T0)
    assert (span.started_at, span.ended_at) == (T0, T0 + timedelta(hours=2))
    assert await ledger.downtime(OUT, T0 + timedelta(hours=3)) == []


async def test_the_first_copy_of_a_message_id_in_a_batch_wins(daemon: Daemon) -> None:
    """Item 6: a valid event followed by an invalid copy was stored `rejected` after a 200."""
    valid = {"type": "track", "userId": "f1", "event": "Kept", "messageId": "same-1"}
    invalid = {"type": "track", "userId": "f1", "messageId": "same-1"}  # no event name
    status, body = await post(daemon, "/v1/batch", {"batch": [valid, invalid]})
    assert status == 200 and body["rejected"][0]["index"] == 1
    row = await daemon.ledger.get(OUT, "same-1")
    assert row is not None and row.status in (Status.PENDING, Status.DELIVERED)


async def test_a_number_that_overflows_is_rejected_naming_the_field_and_spares_the_rest(daemon: Daemon) -> None:
    """Item 5: ``1e999`` parsed to infinity, PostgreSQL refused the commit and every request sharing it got 503."""
    raw = (b'{"batch": [{"type": "track", "userId": "n1", "event": "Big", "messageId": "big-1",'
           b' "properties": {"price": 1e999}}, {"type": "track", "userId": "n1", "event": "Fine",'
           b' "messageId": "fine-1"}]}')
    status, body = await post(daemon, "/v1/batch", raw)
    assert status == 200 and body["rejected"] == [
        {"index": 0, "error": "properties.price: a number too large to represent (not finite)"}]
    assert (await daemon.ledger.get(OUT, "big-1")).status is Status.REJECTED  # type: ignore[union-attr]
    assert await daemon.ledger.get(OUT, "fine-1") is not None
    single = b'{"userId": "n1", "event": "Big", "messageId": "big-2", "properties": {"n": -1e999}}'
    status, body = await post(daemon, "/v1/track", single)
    assert status == 400 and "properties.n" in body["error"]
    hook = b'{"email": "n@x.io", "eventName": "emailOpen", "dataFields": {"x": 1e999}}'
    async with aiohttp.ClientSession() as session, session.post(
            url(daemon, "/iterable/webhook"), data=hook, headers={"Authorization": "test-webhook-token"}) as reply:
        assert reply.status == 400 and "dataFields.x" in (await reply.json())["error"]


async def test_a_whole_request_400_finds_the_bad_item_with_single_calls(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Item 8: bisection cost 2N-1 bulk requests at 5/s; single calls cost N at 500/s."""
    fake, _ = fake_iterable
    fake.poison_emails = {"bad@example.com"}
    batch = [{"type": "identify", "userId": f"s{n}", "messageId": f"s-{n}",
              "traits": {"email": "bad@example.com" if n == 37 else f"s{n}@example.com"}} for n in range(200)]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: _all(daemon.ledger, Status.DELIVERED, 199), within=20)
    row = await daemon.ledger.get(OUT, "s-37")
    assert row is not None and row.status is Status.DEAD and "HTTP 400" in (row.reason or "")
    bulk = [e for e, _ in fake.requests if e == "users/bulkUpdate"]
    single = [e for e, _ in fake.requests if e == "users/update"]
    assert len(bulk) == 1 and len(single) == 200  # not ~400 bulk requests


async def test_unmatched_bulk_failures_are_not_reported_delivered(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """failCount says 1 failed but names nothing we sent: each item is confirmed with a single call."""
    from sync.sandbox import Fault

    fake, _ = fake_iterable
    fake.faults.add(Fault(endpoint="events/trackBulk", status=200, body={
        "successCount": 2, "failCount": 1, "invalidEmails": [], "invalidUserIds": [], "disallowedEventNames": [],
        "failedUpdates": {"notFoundUserIds": ["SOMEONE-ELSE"]}}))
    fake.add_users(3, "m")
    batch = [{"type": "track", "userId": f"m{n}", "event": "E", "messageId": f"m-{n}"} for n in range(3)]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: _all(daemon.ledger, Status.DELIVERED, 3))
    assert sorted(body["id"] for e, body in fake.requests if e == "events/track") == ["m-0", "m-1", "m-2"]


@pytest.mark.parametrize("header", ["Basic ñandú", "ñ"])
async def test_a_non_ascii_authorization_header_is_401_not_500(daemon: Daemon, header: str) -> None:
    status, body = await post(daemon, "/v1/batch", {"batch": []}, headers={"Authorization": header})
    assert status == 401 and body["success"] is False


async def test_an_unauthenticated_body_is_not_parsed(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 12: a write key only in the body used to cost a full parse before it was checked."""
    import sync.http.ingress

    parsed: list[int] = []
    real = sync.http.ingress.strict_loads
    monkeypatch.setattr(sync.http.ingress, "strict_loads", lambda raw: parsed.append(len(raw)) or real(raw))
    big = {"batch": [{"type": "track", "userId": "x", "event": "E" * 500} for _ in range(1500)], "writeKey": "nope"}
    status, _ = await post(daemon, "/v1/batch", big, headers={})
    assert status == 401 and parsed == []
    status, _ = await post(daemon, "/v1/batch", {"batch": [], "writeKey": "test-write-key"}, headers={})
    assert status == 200 and len(parsed) == 1


async def test_scrapes_and_probes_never_read_the_ledger_or_the_scripts(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 13: every scrape ran a full-table count; /readyz re-read the migration scripts."""
    from alembic.script import ScriptDirectory

    async def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("a scrape read the ledger")

    monkeypatch.setattr(daemon.ledger, "stats", forbidden)
    monkeypatch.setattr(daemon.ledger, "pending", forbidden)
    reads: list[int] = []
    real = ScriptDirectory.from_config
    monkeypatch.setattr(ScriptDirectory, "from_config", lambda *a, **k: reads.append(1) or real(*a, **k))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(url(daemon, "/metrics")) as reply:
                assert reply.status == 200 and "sync_ledger_pending" in await reply.text()
            async with session.get(url(daemon, "/readyz")) as reply:
                assert reply.status == 200
    assert reads == []


async def test_unsigned_array_tails_can_be_refused(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Item 15: `outbound.accept_unsigned_array_tails = false` refuses arrays nobody signed past element 0."""
    import dataclasses

    from sync.http.ingress import CONFIG

    config = daemon.app[CONFIG]
    strict = dataclasses.replace(config, outbound=dataclasses.replace(config.outbound,
                                                                      accept_unsigned_array_tails=False))
    daemon.app._frozen = False  # test-only: swap the config of the running app
    daemon.app[CONFIG] = strict
    first = b'{"type": "track", "userId": "t1", "event": "A", "messageId": "tail-1"}'
    two = b"[" + first + b',{"type": "track", "userId": "t1", "event": "Forged", "messageId": "tail-2"}]'
    status, body = await post(daemon, "/segment/webhook", two, {"X-Signature": sign(first, SHARED_SECRET)})
    assert status == 401 and "accept_unsigned_array_tails" in body["error"]
    assert await daemon.ledger.get(OUT, "tail-1") is None
    one = b"[" + first + b"]"
    assert (await post(daemon, "/segment/webhook", one, {"X-Signature": sign(first)}))[0] == 200


async def test_backfill_without_until_resumes_when_run_again(
        ledger: Ledger, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Item 9: the cursor was named after now(), so the same command started over each time."""
    fake, base = fake_iterable
    fake.enforce_rate_limits = False
    since = datetime.now(UTC) - timedelta(days=3)
    fake.export_records["emailOpen"] = [
        {"email": f"b{n}@x.io", "createdAt": (since + timedelta(hours=n * 10)).strftime("%Y-%m-%d %H:%M:%S +00:00"),
         "messageId": f"b{n}"} for n in range(7)]
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        puller = ExportPuller(iterable_client(_config(base), session, metrics), Intake(ledger, metrics), ledger,
                              event_names="segment")
        first = await puller.run(["emailOpen"], since, datetime.now(UTC), open_ended=True)
        requests = len(fake.hits)
        second = await puller.run(["emailOpen"], since, datetime.now(UTC), open_ended=True)
    assert first.new == 7 and second.fetched == 0
    assert len(fake.hits) - requests <= 1  # at most the sliver of time since the first run


@pytest.mark.parametrize(("value", "longest"), [("inf", 0), ("1e15", 0), ("-5", 0), ("soon", 0)])
async def test_hostile_retry_after_values_never_stop_delivery(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], value: str, longest: float) -> None:
    """Item 4: `Retry-After: inf` raised OverflowError and the daemon exited 1; `1e15` held it for years (and
    then, issue 19 item 6, for an hour): absurd values are absent, normal backoff."""
    from sync.sandbox import Fault

    fake, _ = fake_iterable
    fake.add_users(1, "h")
    fake.faults.add(Fault(endpoint="events/trackBulk", status=429, retry_after=value))
    event = {"type": "track", "userId": "h0", "event": "E", "messageId": "h-1"}
    assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
    await wait_for(lambda: _attempted(daemon))
    row = await daemon.ledger.get(OUT, "h-1")
    assert row is not None and row.attempts >= 1
    # delivered already (normal backoff), due within the clamp, or taken again (a leased row's next attempt is
    # its lease expiry)
    assert (row.status is Status.DELIVERED or row.lease_owner is not None
            or row.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=longest + 5))
    assert daemon.workers[0].gate.held() <= longest
    assert not any(task.done() for task in daemon.tasks)  # the worker lives on
    if longest == 0:
        await wait_for(lambda: bool(fake.event_log))


async def _attempted(daemon: Daemon) -> bool:
    row = await daemon.ledger.get(OUT, "h-1")
    return row is not None and row.attempts >= 1


async def test_overload_is_a_quick_503_with_retry_after(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 14 over HTTP: when too much waits for the ledger, the sender is told to come back, at once."""
    from sync.http.ingress import INTAKE

    commits = daemon.app[INTAKE].commits
    committing, gate = asyncio.Event(), asyncio.Event()
    real, submit = commits.ledger.record, commits.submit
    submitted: list[Any] = []

    async def stuck(batch: Any, now: datetime, **options: Any) -> set[str]:
        committing.set()
        await gate.wait()
        return await real(batch, now, **options)

    async def counted(rows: Any) -> Any:
        submitted.append(rows)  # they are queued before its first await
        return await submit(rows)

    monkeypatch.setattr(commits.ledger, "record", stuck)
    monkeypatch.setattr(commits, "submit", counted)
    commits.max_queued = 150
    events = [{"type": "track", "userId": "o", "event": "E", "messageId": f"ov-{n}"} for n in range(100)]
    first = asyncio.create_task(post(daemon, "/v1/batch", {"batch": events[:1]}))
    await asyncio.wait_for(committing.wait(), 10)  # its commit is stuck; the next request waits in the queue
    second = asyncio.create_task(post(daemon, "/v1/batch", {"batch": events[1:100]}))
    await wait_for(lambda: len(submitted) == 2)
    async with aiohttp.ClientSession() as session, session.post(
            url(daemon, "/v1/batch"), json={"batch": [{**e, "messageId": f"x-{n}"} for n, e in enumerate(events)]},
            headers=BASIC) as reply:
        assert reply.status == 503 and reply.headers["Retry-After"] == "1"
        assert "overloaded" in (await reply.json())["error"]
    gate.set()
    assert (await first)[0] == 200 and (await second)[0] == 200


async def test_backfill_tries_a_425_again_as_delivery_does(
        ledger: Ledger, fake_iterable: tuple[FakeIterable, str]) -> None:
    """One rule for what Iterable may answer differently next time (``sync.iterable.api.retryable``): the export
    pull gave up on a 425 Too Early that the delivery sink retried."""
    from sync.sandbox import Fault

    fake, base = fake_iterable
    fake.enforce_rate_limits = False
    since = datetime(2020, 1, 1, tzinfo=UTC)
    fake.export_records["emailOpen"] = [{"email": "t@x.io", "createdAt": "2020-01-01 06:00:00 +00:00",
                                         "messageId": "t1"}]
    fake.faults.add(Fault(endpoint="data.json", status=425))
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        puller = ExportPuller(iterable_client(_config(base), session, metrics), Intake(ledger, metrics), ledger,
                              event_names="segment", sleep=no_wait)
        progress = await puller.run(["emailOpen"], since, since + timedelta(days=1))
    assert progress.new == 1 and len(waits) == 1
