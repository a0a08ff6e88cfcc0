"""Segment -> Iterable through the real HTTP ingress, the ledger and the fake Iterable."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, Fault
from tests.support import WEBHOOK_TOKEN, WRITE_KEY, sign, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.address[1]}{path}"


async def post(daemon: Daemon, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(
        url(daemon, path), data=io.BytesIO(raw) if len(raw) > 512 * 1024 else raw, headers={"Content-Type": "application/json", **(BASIC if headers is None else headers)}
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_identify_then_track_reach_iterable(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = {"batch": [
        {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "ann@example.com", "plan": "pro"}},
        {"type": "track", "userId": "u1", "messageId": "m2", "event": "Signed Up", "properties": {"x": 1},
         "timestamp": "2026-01-02T03:04:05Z"},
    ]}
    status, body = await post(daemon, "/v1/batch", batch)
    assert (status, body) == (200, {"success": True})
    await wait_for(lambda: len(fake.event_log) == 1)
    assert fake.users[0]["email"] == "ann@example.com" and fake.users[0]["dataFields"]["plan"] == "pro"
    assert fake.event_log[0] == {"userId": "u1", "eventName": "Signed Up", "id": "m2", "dataFields": {"x": 1},
                                 "createdAt": 1767323045}
    assert [e for e, _ in fake.requests] == ["users/bulkUpdate", "events/trackBulk"]


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_the_real_segment_library_works_unchanged(daemon: Daemon,
                                                        fake_iterable: tuple[FakeIterable, str]) -> None:
    from segment.analytics import Client

    fake, _ = fake_iterable
    errors: list[Any] = []
    client = Client(WRITE_KEY, host=url(daemon, ""), on_error=lambda e, b: errors.append(e), upload_interval=0.05)
    client.identify("u7", {"email": "lib@example.com", "name": "Lib"}, message_id="lib-1")
    client.track("u7", "Button Clicked", {"color": "blue"}, message_id="lib-2")
    client.page("u7", name="Docs", properties={"path": "/docs"}, message_id="lib-3")
    client.screen("u7", name="Settings", message_id="lib-4")
    client.group("u7", "acme", message_id="lib-5")
    client.alias("lib@example.com", "lib2@example.com", message_id="lib-6")
    await in_thread(client.flush)
    await in_thread(client.join)
    assert errors == []
    await wait_for(lambda: len(fake.event_log) == 3 and fake.email_changes)
    assert [e["eventName"] for e in fake.event_log] == ["Button Clicked", "Docs page", "Settings screen"]
    assert fake.find_user("lib2@example.com", "u7")["dataFields"]["name"] == "Lib"  # type: ignore[index]
    row = await daemon.ledger.get(Direction.OUTBOUND, "lib-5")
    assert row is not None and row.status is Status.SKIPPED and "group" in (row.reason or "")


async def test_sync_mode_single_calls_and_every_endpoint(daemon: Daemon,
                                                        fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    for path, body in [
        ("/v1/identify", {"userId": "s1", "traits": {"email": "s1@example.com"}, "messageId": "s-1"}),
        ("/v1/track", {"userId": "s1", "event": "Order Completed", "messageId": "s-2",
                       "properties": {"order_id": "o1", "total": 9.5,
                                      "products": [{"product_id": "p1", "name": "P", "price": 9.5, "quantity": 1}]}}),
        ("/v1/track", {"userId": "s1", "event": "Cart Updated", "messageId": "s-3",
                       "properties": {"products": [{"product_id": "p2", "name": "Q", "price": 1, "quantity": 2}]}}),
        ("/v1/page", {"userId": "s1", "messageId": "s-4"}),
        ("/v1/screen", {"userId": "s1", "name": "Home", "messageId": "s-5"}),
    ]:
        assert await post(daemon, path, body) == (200, {"success": True})
    await wait_for(lambda: len(fake.event_log) == 2 and fake.purchases and "s1" in fake.carts)
    assert fake.purchases["o1"]["total"] == 9.5 and fake.purchases["o1"]["items"][0]["id"] == "p1"
    assert [e["eventName"] for e in fake.event_log] == ["Loaded a Page", "Home screen"]


async def test_write_key_in_body_is_accepted_and_bad_keys_are_401(daemon: Daemon) -> None:
    event = {"type": "track", "userId": "u", "event": "E", "messageId": "wk-1"}
    assert (await post(daemon, "/v1/batch", {"batch": [event], "writeKey": WRITE_KEY}, headers={}))[0] == 200
    for headers, body in [({}, {"batch": [event]}), ({}, {"batch": [event], "writeKey": "nope"}),
                          ({"Authorization": "Basic " + base64.b64encode(b"nope:").decode()},
                           {"batch": [event], "writeKey": WRITE_KEY})]:
        status, reply = await post(daemon, "/v1/batch", {**body, "batch": [{**event, "messageId": "wk-2"}]},
                                   headers=headers)
        assert status == 401 and reply["success"] is False
    assert await daemon.ledger.get(Direction.OUTBOUND, "wk-2") is None


async def test_signed_webhook_single_and_array(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    single = json.dumps({"type": "identify", "userId": "w1", "messageId": "wh-1",
                         "traits": {"email": "w1@example.com"}}).encode()
    assert await post(daemon, "/segment/webhook", single, {"X-Signature": sign(single)}) == (200, {"success": True})
    first = b'{"type": "track", "userId": "w1", "event": "A", "messageId": "wh-2"}'
    array = b"[ " + first + b',\n{"type":"track","userId":"w1","event":"B","messageId":"wh-3"}]'
    assert (await post(daemon, "/segment/webhook", array, {"X-Signature": sign(first)}))[0] == 200
    await wait_for(lambda: len(fake.event_log) == 2)
    assert [e["eventName"] for e in fake.event_log] == ["A", "B"]
    for headers in ({}, {"X-Signature": sign(single, "wrong")}, {"X-Signature": sign(array)}):
        status, _ = await post(daemon, "/segment/webhook", array.replace(b"wh-", b"bad-"), headers)
        assert status == 401
    assert await daemon.ledger.get(Direction.OUTBOUND, "bad-2") is None


async def test_invalid_events_in_a_batch_do_not_sink_the_rest(daemon: Daemon,
                                                              fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = {"batch": [
        {"type": "identify", "userId": "b1", "messageId": "ok-1"},
        {"type": "track", "userId": "b1", "messageId": "bad-1"},
        "not an object",
        {"type": "track", "userId": "b1", "event": "Order Completed", "messageId": "bad-2",
         "properties": {"order_id": "o"}},
        {"type": "track", "userId": "b1", "event": "Fine", "messageId": "ok-2"},
    ]}
    status, body = await post(daemon, "/v1/batch", batch)
    assert status == 200 and body["success"] is True
    assert [(r["index"], r["error"].split(":")[0]) for r in body["rejected"]] == [
        (1, "event"), (2, "event"), (3, "properties.total")]
    await wait_for(lambda: len(fake.event_log) == 1)
    rejected = await daemon.ledger.get(Direction.OUTBOUND, "bad-2")
    assert rejected is not None and rejected.status is Status.REJECTED and "total" in (rejected.reason or "")


async def test_single_event_errors_are_400_naming_the_field(daemon: Daemon) -> None:
    assert await post(daemon, "/v1/track", {"userId": "u", "messageId": "x1"}) == (
        400, {"success": False, "error": "event: required for track (a non-empty string)"})
    status, body = await post(daemon, "/v1/batch", b"{not json")
    assert status == 400 and "JSON" in body["error"]
    status, body = await post(daemon, "/v1/batch", {"batch": "nope"})
    assert status == 400 and "batch" in body["error"]


async def test_oversized_body_is_413_before_parsing(daemon: Daemon) -> None:
    big = b'{"batch": [' + b" " * (2 * 1024 * 1024) + b"]}"
    status, body = await post(daemon, "/v1/batch", big)
    assert status == 413 and body["success"] is False


async def test_duplicate_message_ids_reach_iterable_once(daemon: Daemon,
                                                         fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    await post(daemon, "/v1/identify", {"userId": "d1", "messageId": "d-0"})
    event = {"type": "track", "userId": "d1", "event": "Once", "messageId": "dup-1"}
    replies = await asyncio.gather(*(post(daemon, "/v1/batch", {"batch": [event, event]}) for _ in range(5)))
    assert all(status == 200 for status, _ in replies)
    await wait_for(lambda: _status(daemon, "dup-1", Status.DELIVERED))  # its one row settled
    await wait_for(lambda: fake.idle)  # and Iterable processed what it accepted
    assert len(fake.event_log) == 1
    assert 'sync_duplicates_total{direction="outbound"} 9.0' in daemon.metrics.render().decode()


async def test_a_user_track_never_overtakes_their_identify(daemon: Daemon,
                                                           fake_iterable: tuple[FakeIterable, str]) -> None:
    """A person's events keep their order around the identify, across the bulk endpoints."""
    fake, _ = fake_iterable
    batch = []
    for n in range(30):
        batch.append({"type": "track", "userId": f"o{n}", "event": "Before", "messageId": f"b{n}",
                      "properties": {"email": f"o{n}@example.com"}})
        batch.append({"type": "identify", "userId": f"o{n}", "messageId": f"i{n}",
                      "traits": {"email": f"o{n}@example.com"}})
        batch.append({"type": "track", "userId": f"o{n}", "event": "After", "messageId": f"a{n}"})
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: sum(e["eventName"] == "After" for e in fake.event_log) == 30)
    endpoints = [(endpoint, body) for endpoint, body in fake.requests]
    first_update = next(i for i, (e, _) in enumerate(endpoints) if e == "users/bulkUpdate")
    first_after = next(i for i, (e, b) in enumerate(endpoints)
                       if e == "events/trackBulk" and any(ev["eventName"] == "After" for ev in b["events"]))
    assert endpoints[0][0] == "events/trackBulk" and first_update < first_after
    # "Before" came first; in a hybrid project an event naming a userId creates the user
    await wait_for(lambda: _status(daemon, "b0", Status.DELIVERED))  # settled after the round, in the background
    assert [q for q, what in fake.project.applied if what != "users/bulkUpdate"] == ["bulk"] * 2
    names = [e["eventName"] for e in fake.event_log if e["userId"] == "o7"]
    assert names == ["Before", "After"]


async def test_partial_bulk_failure_dead_letters_only_the_failed_items(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.disallowed_event_names = {"Forbidden"}
    fake.invalid_data_emails = {"bad@example.com"}
    batch = [{"type": "identify", "userId": f"p{n}", "messageId": f"pi{n}", "traits": {"email": f"p{n}@example.com"}}
             for n in range(5)]
    batch += [{"type": "identify", "userId": "px", "messageId": "pi-bad", "traits": {"email": "bad@example.com"}},
              {"type": "track", "userId": "p1", "event": "Forbidden", "messageId": "pt-bad"},
              {"type": "track", "userId": "p1", "event": "Fine", "messageId": "pt-ok"}]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: len(fake.event_log) == 1)
    await wait_for(lambda: _status(daemon, "pt-bad", Status.DEAD))
    dead = await daemon.ledger.get(Direction.OUTBOUND, "pi-bad")
    assert dead is not None and dead.status is Status.DEAD and "invalidDataUserIds" in (dead.reason or "")
    assert len(fake.users) == 5
    assert [r.key for r in await daemon.ledger.rows(status=Status.DEAD)] == ["pi-bad", "pt-bad"]


async def _status(daemon: Daemon, key: str, status: Status) -> bool:
    row = await daemon.ledger.get(Direction.OUTBOUND, key)
    return row is not None and row.status is status


async def test_a_bad_item_that_fails_the_whole_request_is_isolated(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.poison_emails = {"poison@example.com"}
    batch = [{"type": "identify", "userId": f"q{n}", "messageId": f"q{n}", "traits": {"email": f"q{n}@example.com"}}
             for n in range(9)]
    batch.insert(4, {"type": "identify", "userId": "qp", "messageId": "q-poison",
                     "traits": {"email": "poison@example.com"}})
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: len(fake.users) == 9)
    await wait_for(lambda: _status(daemon, "q-poison", Status.DEAD))
    dead = await daemon.ledger.get(Direction.OUTBOUND, "q-poison")
    assert "RequestFieldsTypesMismatched" in (dead.reason or "")  # type: ignore[union-attr]


async def test_429_with_retry_after_is_honoured(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.faults.add(Fault(endpoint="users/bulkUpdate", status=429, retry_after="1",
                          body={"msg": "Rate limit exceeded", "code": "RateLimitExceeded"}))
    assert (await post(daemon, "/v1/identify", {"userId": "r1", "messageId": "r-1"}))[0] == 200
    await wait_for(lambda: _status(daemon, "r-1", Status.DELIVERED), within=10)
    times = [t for endpoint, t in fake.hits if endpoint == "users/bulkUpdate"]
    assert len(times) == 2 and times[1] - times[0] >= 1.0
    row = await daemon.ledger.get(Direction.OUTBOUND, "r-1")
    assert row is not None and row.status is Status.DELIVERED and row.attempts == 2


async def test_a_5xx_storm_and_resets_end_with_everything_delivered(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.faults.add(Fault(endpoint="*", status=503, times=6), Fault(endpoint="*", mode="reset", times=2))
    batch = [{"type": "identify", "userId": f"s{n}", "messageId": f"st{n}"} for n in range(20)]
    batch += [{"type": "track", "userId": f"s{n}", "event": "E", "messageId": f"se{n}"} for n in range(20)]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: len(fake.users) == 20 and len(fake.event_log) == 20, within=20)
    assert len({e["id"] for e in fake.event_log}) == 20
    text = daemon.metrics.render().decode()
    assert 'sync_upstream_requests_total{endpoint="users/bulkUpdate",status="503",target="iterable"}' in text


async def test_bad_api_key_pauses_outbound_and_it_resumes_by_itself(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    good = fake.api_key
    fake.api_key = "rotated"
    assert (await post(daemon, "/v1/identify", {"userId": "k1", "messageId": "k-1"}))[0] == 200
    await wait_for(lambda: daemon.paused().get("outbound") is not None)
    assert (await post(daemon, "/v1/identify", {"userId": "k2", "messageId": "k-2"}))[0] == 200  # ingest goes on
    async with aiohttp.ClientSession() as session, session.get(url(daemon, "/readyz")) as response:
        ready = await response.json()
    assert response.status == 200 and "401" in ready["paused"]["outbound"]
    assert 'sync_direction_paused{direction="outbound"} 1.0' in daemon.metrics.render().decode()
    assert (await daemon.ledger.stats()).paused["outbound"]
    assert await daemon.ledger.rows(status=Status.DEAD) == []
    # an operator pauses it too: neither reason hides the other (a bug hunt: /readyz showed only the 401)
    now = datetime.now(UTC)
    await daemon.ledger.pause(Direction.OUTBOUND, "maintenance window", now, kind="manual")
    for worker in daemon.workers:
        worker.recheck()
    await wait_for(lambda: "maintenance window" in daemon.paused().get("outbound", ""))
    assert "401" in daemon.paused()["outbound"]
    await daemon.ledger.resume(Direction.OUTBOUND, now, kind="manual")
    for worker in daemon.workers:
        worker.recheck()
    fake.api_key = good
    await wait_for(lambda: len(fake.users) == 2, within=10)
    await wait_for(lambda: daemon.paused() == {})
    assert 'sync_direction_paused{direction="outbound"} 0.0' in daemon.metrics.render().decode()


async def test_metrics_count_received_delivered_skipped_rejected(daemon: Daemon,
                                                                 fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = [{"type": "identify", "userId": "m1", "messageId": "mm1"},
             {"type": "group", "userId": "m1", "groupId": "g", "messageId": "mm2"},
             {"type": "track", "userId": "m1", "messageId": "mm3"}]
    await post(daemon, "/v1/batch", {"batch": batch})
    await wait_for(lambda: len(fake.users) == 1)
    await wait_for(lambda: 'sync_events_delivered_total{direction="outbound"} 1.0' in daemon.metrics.render().decode())
    async with aiohttp.ClientSession() as session, session.get(url(daemon, "/metrics")) as response:
        text = await response.text()
    for line in ['sync_events_received_total{direction="outbound",type="identify"} 1.0',
                 'sync_events_skipped_total{direction="outbound",reason="group"} 1.0',  # the rule, not free text
                 'sync_events_rejected_total{direction="outbound"} 1.0',
                 'sync_ledger_pending{direction="outbound"} 0.0',
                 "sync_delivery_seconds_count 1.0", 'sync_mapping_info{digest="']:
        assert line in text
    assert WRITE_KEY not in text


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints(daemon: Daemon, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url(daemon, path)) as response:
        assert response.status == 200


@pytest.mark.parametrize(("event", "reason"), [
    ({"type": "track", "event": "Viewed"}, "no email or userId"),  # (with an anonymousId it is held: test_people)
    ({"type": "track", "userId": "u1", "event": "E", "integrations": {"Iterable": False}}, "integrations.Iterable"),
    ({"type": "track", "userId": "u1", "event": "E", "integrations": {"All": False}}, "integrations.All"),
    ({"type": "track", "userId": "u1", "event": "Email Opened",
      "context": {"integration": {"name": "iterable", "version": "1"}}}, "loop guard"),
    ({"type": "alias", "previousId": "anon-7", "userId": "u7"}, "alias needs"),
    ({"type": "group", "userId": "u1", "groupId": "g1"}, "group is not supported"),
])
async def test_skipped_events_are_recorded_with_their_reason_and_never_sent(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], event: dict[str, Any], reason: str) -> None:
    fake, _ = fake_iterable
    assert (await post(daemon, "/v1/batch", {"batch": [{**event, "messageId": "skip-1"}]}))[0] == 200
    row = await daemon.ledger.get(Direction.OUTBOUND, "skip-1")
    assert row is not None and row.status is Status.SKIPPED and reason in (row.reason or "")
    sentinel = {"type": "identify", "userId": "sentinel", "messageId": "after-skip", "traits": {"a": 1}}
    assert (await post(daemon, "/v1/batch", {"batch": [sentinel]}))[0] == 200
    await wait_for(lambda: _status(daemon, "after-skip", Status.DELIVERED))  # the worker got past the skip
    assert [body["userId"] for _, request in fake.requests for body in request["users"]] == ["sentinel"]


@pytest.mark.parametrize("name", ["Product Added", "Product Removed"])
async def test_product_events_with_the_cart_replace_iterables_cart(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], name: str) -> None:
    fake, _ = fake_iterable
    products = [{"product_id": "p1", "name": "A", "price": 2.5, "quantity": 2, "category": "C", "size": "M"},
                {"product_id": "p2", "name": "B", "price": 1, "quantity": 1}]
    batch = [{"type": "track", "userId": "c1", "event": name, "messageId": "c-1",
              "context": {"traits": {"email": "c1@example.com"}}, "properties": {"products": products}},
             {"type": "track", "userId": "c1", "event": name, "messageId": "c-2",
              "properties": {"product_id": "p3"}}]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: len(fake.event_log) == 1 and "c1" in fake.carts)
    assert fake.carts["c1"] == [
        {"id": "p1", "name": "A", "price": 2.5, "quantity": 2, "categories": ["C"], "dataFields": {"size": "M"}},
        {"id": "p2", "name": "B", "price": 1.0, "quantity": 1}]
    assert fake.event_log[0]["eventName"] == name  # without products: a plain custom event


async def test_a_backlog_goes_out_in_full_bulk_requests(daemon: Daemon,
                                                        fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = [{"type": "identify", "userId": f"bl{n}", "messageId": f"bl{n}"} for n in range(2500)]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: len(fake.users) == 2500, within=20)
    sizes = [len(body["users"]) for endpoint, body in fake.requests if endpoint == "users/bulkUpdate"]
    assert sorted(sizes, reverse=True) == [1000, 1000, 500]  # a round's requests are in flight at once
    assert not [e for e, _ in fake.hits if e not in ("users/bulkUpdate", "users/getFields")]  # getFields: at start


async def test_dead_and_oldest_pending_metrics(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.poison_emails = {"dead@example.com"}
    fake.faults.add(Fault(endpoint="events/trackBulk", status=503, times=10_000))
    batch = [{"type": "identify", "userId": "dm", "messageId": "dm-1", "traits": {"email": "dead@example.com"}},
             {"type": "track", "userId": "other", "event": "Waits", "messageId": "dm-2"}]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: _status(daemon, "dm-1", Status.DEAD))
    await daemon.jobs.refresh_gauges()  # the periodic job (every 15 s) fills the gauges a scrape serves
    async with aiohttp.ClientSession() as session, session.get(url(daemon, "/metrics")) as response:
        text = await response.text()
    assert 'sync_events_dead_total{direction="outbound"} 1.0' in text
    assert 'sync_ledger_pending{direction="outbound"} 1.0' in text
    oldest = next(line for line in text.splitlines() if line.startswith('sync_oldest_pending_seconds{direction="out'))
    assert float(oldest.split()[-1]) > 0


async def test_a_row_the_mapper_cannot_handle_is_dead_lettered_not_a_crash_loop(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], fake_segment: Any) -> None:
    from datetime import UTC, datetime

    from sync.model import NewEvent

    fake, _ = fake_iterable
    broken = [NewEvent(direction=Direction.OUTBOUND, key="broken-1", kind="track", payload={"type": "track"},
                       user_key="x"),
              NewEvent(direction=Direction.INBOUND, key="broken-2", kind="emailOpen", payload={"eventName": 5},
                       user_key="y")]
    await daemon.ledger.record(broken, datetime.now(UTC))
    for worker in daemon.workers:
        worker.notify()
    await wait_for(lambda: _dead_keys(daemon, {"broken-1", "broken-2"}))
    assert all(not task.done() for task in daemon.tasks)  # the workers live on
    assert (await post(daemon, "/v1/identify", {"userId": "after", "messageId": "after-1"}))[0] == 200
    await wait_for(lambda: fake.find_user(user_id="after") is not None)


async def _dead_keys(daemon: Daemon, keys: set[str]) -> bool:
    return {r.key for r in await daemon.ledger.rows(status=Status.DEAD)} == keys


@pytest.mark.parametrize(("path", "auth"), [
    ("/v1/track", "basic"), ("/v1/batch", "basic"), ("/v1/batch", "none"), ("/segment/webhook", "signature"),
    ("/iterable/webhook", "token"),
])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_a_400_naming_it(daemon: Daemon, path: str, auth: str,
                                                                  encoding: str, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    """A corrupt gzip body answered 500 with a traceback, even without credentials on `/v1/batch` (its body
    is read for a write key) and with any well-formed `X-Signature`. Then the 400 still left an "Unhandled
    exception" traceback at ERROR in the log (anyone with the token could fill the error log)."""
    headers = {"none": {}, "basic": BASIC, "signature": {"X-Signature": "0" * 40},
               "token": {"Authorization": WEBHOOK_TOKEN}}[auth]
    status, body = await post(daemon, path, b"\x1f\x8b\x08garbage", {**headers, "Content-Encoding": encoding})
    assert status == 400, body
    assert body == {"success": False, "error": f"body: cannot be decoded as its Content-Encoding ('{encoding}') says"}
    assert (await post(daemon, "/v1/track", {"userId": "u1", "event": "E", "messageId": "after"}))[0] == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
