"""SPEC section 13 through the real ingress, the ledger (SQLite and PostgreSQL) and the fakes: the inputs of
issue 21, each with the value that a user would see upstream or in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sync.app import Daemon
from sync.model import Direction, Status
from sync.sandbox import FakeIterable
from tests.integration.test_outbound import post
from tests.support import wait_for


async def _row(daemon: Daemon, key: str) -> Any:
    async def settled() -> bool:
        row = await daemon.ledger.get(Direction.OUTBOUND, key)
        return row is not None and row.status is not Status.PENDING

    await wait_for(settled, within=20)
    return await daemon.ledger.get(Direction.OUTBOUND, key)


async def test_the_issues_inputs_reach_iterable_with_the_right_values(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    product = {"product_id": "p1", "name": "Mug", "price": "19.99", "quantity": "2"}
    batch = [
        {"type": "identify", "userId": "jane", "messageId": "i-1", "traits": {"email": " Jane.Doe+news@Example.com "}},
        {"type": "track", "userId": "jane", "messageId": "t-1", "event": "Signed In",
         "timestamp": "2024-05-01 10:00:00+00"},
        {"type": "track", "userId": "jane", "messageId": "t-2", "event": "Signed In", "timestamp": "2024-05-01"},
        {"type": "track", "userId": "jane", "messageId": "o-1", "event": "Order Completed",
         "properties": {"orderId": "ORD-1001", "total": 39.98, "products": [product]}},
        {"type": "track", "userId": "jane", "messageId": "o-2", "event": "order_completed",  # the retry
         "properties": {"orderId": "ORD-1001", "total": 39.98, "products": [product]}},
        {"type": "track", "userId": "jane", "messageId": "opt-1", "event": "Opted In",
         "integrations": {"All": False, "Iterable": {}}},
    ]
    status, answer = await post(daemon, "/v1/batch", {"batch": batch})
    assert (status, answer) == (200, {"success": True})
    await wait_for(lambda: len(fake.event_log) == 3 and "ORD-1001" in fake.purchases and fake.idle, within=20)
    user = fake.find_user(user_id="jane")
    assert user is not None and user["email"] == "Jane.Doe+news@Example.com"
    created = {e["id"]: e.get("createdAt") for e in fake.event_log}
    assert created["t-1"] == 1714557600 and created["t-2"] == 1714521600
    assert "opt-1" in created
    assert list(fake.purchases) == ["ORD-1001"]  # the same order twice is one purchase
    assert fake.purchases["ORD-1001"]["items"][0] | {} == {"id": "p1", "name": "Mug", "price": 19.99, "quantity": 2}


async def test_the_issues_unreadable_values_are_rejected_naming_the_field(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = [
        {"type": "track", "userId": "u", "messageId": "r-1", "event": "Order Completed",
         "properties": {"total": 5, "products": [{"product_id": "p", "name": "P", "price": "$19.99"}]}},
        {"type": "track", "userId": "u", "messageId": "r-2", "event": "Order Completed",
         "properties": {"total": 5, "products": [{"product_id": "p", "name": "P"}]}},
        {"type": "identify", "userId": "u", "messageId": "r-3", "traits": {"email": "not-an-email@"}},
        {"type": "track", "userId": "u", "messageId": "r-4", "event": "E",
         "properties": {"at": "0001-01-01T00:00:00+01:00"}},
        {"type": "track", "userId": "u", "messageId": "r-5", "event": "E", "timestamp": "0001-01-01T00:00:00+01:00"},
        {"type": "track", "userId": "u", "messageId": "ok-1", "event": "E"},
    ]
    status, answer = await post(daemon, "/v1/batch", {"batch": batch})
    assert status == 200 and [r["index"] for r in answer["rejected"]] == [0, 1, 2, 3, 4]
    expected = {"r-1": "properties.products[0].price: not a number",
                "r-2": "properties.products[0].price: required", "r-3": "traits.email: not an email address",
                "r-4": "properties.at: not a time", "r-5": "timestamp: not a time"}
    for key, reason in expected.items():
        row = await _row(daemon, key)
        assert row.status is Status.REJECTED and row.reason.startswith(reason), (key, row.reason)
    await wait_for(lambda: len(fake.event_log) == 1)
    assert fake.purchases == {}


async def test_a_batch_sent_at_corrects_the_device_clock(daemon: Daemon,
                                                        fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    received = datetime.now(UTC)
    device_ahead = {"timestamp": "2030-01-01T10:00:00Z"}  # a device clock years ahead, sending at once
    status, _ = await post(daemon, "/v1/batch", {"sentAt": "2030-01-01T10:00:05Z", "batch": [
        {"type": "track", "userId": "c", "messageId": "c-1", "event": "E", **device_ahead}]})
    assert status == 200
    await wait_for(lambda: len(fake.event_log) == 1)
    created = fake.event_log[0]["createdAt"]
    assert abs(created - (received.timestamp() - 5)) < 30  # receivedAt - (sentAt - originalTimestamp)
    row = await _row(daemon, "c-1")
    assert row.payload["sentAt"] == "2030-01-01T10:00:05Z" and "receivedAt" in row.payload


async def test_an_unreadable_inbound_time_is_rejected_and_never_merges(daemon: Daemon) -> None:
    from tests.integration.test_inbound import send

    hook = {"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"campaignId": 1, "templateId": 2}}
    for created in ("yesterday", "the day before"):
        status, answer = await send(daemon, {**hook, "dataFields": {**hook["dataFields"], "createdAt": created}})
        assert status == 400 and answer["error"].startswith("dataFields.createdAt: not a time")  # SPEC 3: one event
    stats = await daemon.ledger.stats()
    assert stats.counts.get(("inbound", "rejected")) == 2  # two rows: the raw texts kept them apart


async def test_an_ios_token_without_a_push_application_is_skipped_never_a_browser_token(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    from tests.integration.test_people import rows

    fake, _ = fake_iterable
    event = {"type": "identify", "userId": "ios-1", "messageId": "d-1", "traits": {"email": "ios@example.com"},
             "context": {"device": {"type": "ios", "token": "apns-token"}}}
    assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
    await _row(daemon, "d-1")
    token = next(r for r in await rows(daemon) if r["kind"] == "device token")
    assert token["status"] == "skipped" and "[iterable.push] application_name" in token["reason"]
    assert "APNS" in token["reason"]
    await wait_for(lambda: fake.idle)
    assert fake.registrations == [] and not any(e.startswith("users/register") for e, _ in fake.requests)
