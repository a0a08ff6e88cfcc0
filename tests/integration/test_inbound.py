"""Iterable -> Segment through the real receiver, the ledger, segment-analytics-python and the fake Segment."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon, running
from sync.config import Config
from sync.inbound.mapper import SEGMENT_NAMES
from sync.model import Direction, Status
from sync.sandbox import FakeSegment, Fault
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.support import SEGMENT_KEY, WEBHOOK_TOKEN, wait_for

AUTH = {"Authorization": WEBHOOK_TOKEN}


async def send(daemon: Daemon, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{daemon.address[1]}/iterable/webhook", data=raw,
        headers={"Content-Type": "application/json", **(AUTH if headers is None else headers)},
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_every_sample_webhook_becomes_a_segment_track(daemon: Daemon,
                                                            fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    for webhook in ITERABLE_WEBHOOKS:
        assert await send(daemon, webhook) == (200, {"success": True})
    await wait_for(lambda: len(fake.messages) == len(ITERABLE_WEBHOOKS))
    by_event = {m["event"]: m for m in fake.messages}
    linked = None  # once a webhook names the email with a userId, later ones carry it (inbound.join_identities)
    for webhook in ITERABLE_WEBHOOKS:
        message = by_event[SEGMENT_NAMES[webhook["eventName"]]]
        fields = webhook["dataFields"]
        assert message["type"] == "track"
        assert message.get("userId") == (webhook.get("userId") or linked)
        linked = linked or webhook.get("userId")
        assert message.get("anonymousId") == (None if webhook.get("userId") else webhook["email"])
        assert message["context"]["traits"] == {"email": webhook["email"]}
        assert message["context"]["integration"]["name"] == "iterable"
        assert message["context"]["library"]["name"] == "analytics-python"
        assert message["integrations"] == {"Iterable": False}
        assert datetime.fromisoformat(message["timestamp"]) == datetime.strptime(fields["createdAt"],
                                                                                "%Y-%m-%d %H:%M:%S %z")
        assert {k: message["properties"][k] for k in fields} == fields
        assert message["messageId"].startswith("iterable-") and len(message["messageId"]) < 100
    opened = by_event["Email Opened"]
    assert opened["context"]["ip"] == "66.249.84.204" and opened["properties"]["email_subject"] == "My subject"
    assert by_event["Email Link Clicked"]["properties"]["link_url"] == "https://www.iterable.com"
    text = daemon.metrics.render().decode()
    assert 'sync_events_received_total{direction="inbound",type="emailOpen"} 1.0' in text
    await wait_for(lambda: 'sync_events_delivered_total{direction="inbound"} 12.0' in daemon.metrics.render().decode())


async def test_concurrent_copies_of_one_webhook_become_one_message(daemon: Daemon,
                                                                   fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    webhook = ITERABLE_WEBHOOKS[1]
    replies = await asyncio.gather(*(send(daemon, copy.deepcopy(webhook)) for _ in range(8)))
    assert all(status == 200 for status, _ in replies)
    await wait_for(lambda: _settled(daemon))  # the one row is delivered: nothing more can go out
    assert len(fake.messages) == 1
    assert 'sync_duplicates_total{direction="inbound"} 7.0' in daemon.metrics.render().decode()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": WEBHOOK_TOKEN + "x"}])
async def test_bad_tokens_are_401_and_nothing_is_recorded(daemon: Daemon, headers: dict[str, str]) -> None:
    status, body = await send(daemon, ITERABLE_WEBHOOKS[0], headers)
    assert status == 401 and body["success"] is False
    assert (await daemon.ledger.stats()).counts == {}


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "a@example.com", "dataFields": {}}, "eventName"), ({"eventName": "emailOpen"}, "email"),
    (b"{nope", "JSON"), ([1, 2], "body"),
])
async def test_bad_bodies_are_400_naming_the_field(daemon: Daemon, body: Any, field: str) -> None:
    status, reply = await send(daemon, body)
    assert status == 400 and field in reply["error"]


@pytest.mark.parametrize(("data", "field"), [({"blob": "x" * 40000}, "32 KB"), ({"createdAt": "whenever"}, "createdAt")])
async def test_a_webhook_that_fails_validation_is_a_400_naming_it_and_recorded_rejected(
        daemon: Daemon, data: dict[str, Any], field: str) -> None:
    """SPEC section 3: a single event that fails validation is a 400 naming the field (it was a 200 listing
    the rejection, as for a batch); the row is kept, rejected, as evidence."""
    webhook = {"email": "a@example.com", "eventName": "emailOpen", "dataFields": data}
    status, reply = await send(daemon, webhook)
    assert status == 400 and reply["success"] is False and field in reply["error"]
    assert (await daemon.ledger.stats()).counts == {("inbound", "rejected"): 1}


async def test_segment_5xx_and_429_storms_end_with_everything_delivered(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    fake.faults.add(Fault(status=500, times=3), Fault(status=429, retry_after="1", times=1),
                    Fault(mode="reset", times=1))
    for webhook in ITERABLE_WEBHOOKS:
        assert (await send(daemon, webhook))[0] == 200
    await wait_for(lambda: len(fake.unique()) == len(ITERABLE_WEBHOOKS), within=20)
    assert len(fake.hits) >= 6
    delivered = f'sync_events_delivered_total{{direction="inbound"}} {float(len(ITERABLE_WEBHOOKS))}'
    await wait_for(lambda: delivered in daemon.metrics.render().decode())
    assert 'sync_upstream_requests_total{endpoint="v1/batch",status="500",target="segment"}' in \
        daemon.metrics.render().decode()


async def test_a_message_segment_refuses_is_found_and_dead_lettered_alone(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    fake.poison_events = {"Push Opened"}
    for webhook in ITERABLE_WEBHOOKS:
        assert (await send(daemon, webhook))[0] == 200
    await wait_for(lambda: len(fake.unique()) == len(ITERABLE_WEBHOOKS) - 1, within=10)
    await wait_for(lambda: _dead_count(daemon, 1))
    dead = await daemon.ledger.rows(status=Status.DEAD, direction=Direction.INBOUND)
    assert [r.kind for r in dead] == ["pushOpen"] and "400" in (dead[0].reason or "")


async def _dead_count(daemon: Daemon, count: int) -> bool:
    return len(await daemon.ledger.rows(status=Status.DEAD)) == count


async def test_segment_401_pauses_inbound_and_resumes(daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    fake.faults.add(Fault(status=401, times=3, body={"code": "unauthorized", "message": "bad key"}))
    assert (await send(daemon, ITERABLE_WEBHOOKS[0]))[0] == 200
    await wait_for(lambda: "inbound" in daemon.paused())
    await wait_for(lambda: len(fake.messages) == 1, within=15)
    await wait_for(lambda: daemon.paused() == {})
    assert await daemon.ledger.rows(status=Status.DEAD) == []


async def test_pending_rows_are_delivered_after_a_restart(stack_config: Config, ledger_url: str,
                                                          fake_segment: tuple[FakeSegment, str]) -> None:
    from tests.conftest import _reset_pg

    fake, _ = fake_segment
    if ledger_url.startswith("postgresql"):
        await _reset_pg(ledger_url)
    fake.faults.add(Fault(status=503, times=10_000))
    async with running(stack_config) as first:
        for webhook in ITERABLE_WEBHOOKS[:4]:
            assert (await send(first, webhook))[0] == 200
        await wait_for(lambda: len(fake.hits) >= 1)
    assert fake.messages == []
    fake.faults.clear()
    async with running(stack_config) as second:
        second.workers[1].retry_base = 0.05
        for worker in second.workers:
            worker.idle_seconds = 0.05
        await _make_due(second)
        await wait_for(lambda: len(fake.unique()) == 4, within=15)
    assert {m["event"] for m in fake.messages} == {"Email Delivered", "Email Opened", "Email Link Clicked",
                                                   "Email Bounced"}


async def _make_due(daemon: Daemon) -> None:
    """The first process scheduled retries up to seconds away; an operator would just wait."""
    from sync.ledger.schema import events

    async with daemon.ledger.engine.begin() as conn:
        await conn.execute(events.update().values(next_attempt_at=datetime.now(UTC)))
    for worker in daemon.workers:
        worker.wake.set()


async def test_uses_the_configured_write_key(daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_segment
    fake.write_key = "another"
    assert (await send(daemon, ITERABLE_WEBHOOKS[0]))[0] == 200
    await wait_for(lambda: len(fake.dropped) == 1)  # like Segment: 200, but not for this workspace
    assert fake.messages == [] and SEGMENT_KEY != "another"


async def _settled(daemon: Daemon) -> bool:
    counts = (await daemon.ledger.stats()).counts
    return counts.get(("inbound", "delivered"), 0) >= 1 and not counts.get(("inbound", "pending"))
