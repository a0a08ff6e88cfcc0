"""Meeting the real Iterable and Segment (issue 9): project types, a creation lag, two processing queues,
email changes, realistic Actions batches, inbound events that look alike, restarts with a sender that
never retries, and setup mistakes a 200 cannot reveal."""

# Real time on purpose: the fake's creation lag and queue delays are wall time, as Iterable's are; the two-queue
# test sends its three steps 50 ms apart, as a sender's requests arrive, so they meet those delays in turn.

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon
from sync.config import Config
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment
from tests.conftest import started
from tests.integration.test_outbound import post, url
from tests.support import WEBHOOK_TOKEN, sign, wait_for

OUT, IN = Direction.OUTBOUND, Direction.INBOUND


@contextlib.asynccontextmanager
async def project(stack_config: Config, ledger_url: str, fake: FakeIterable, project_type: str,
                  **fake_settings: Any) -> AsyncIterator[Daemon]:
    """A daemon configured for ``project_type`` against a fake project of that type."""
    fake.reset(project_type=project_type, **fake_settings)
    config = replace(stack_config, iterable=replace(stack_config.iterable, project_type=project_type))
    async with started(config, ledger_url) as daemon:
        yield daemon


async def counts(daemon: Daemon) -> dict[str, int]:
    return {status: n for (direction, status), n in (await daemon.ledger.stats()).counts.items()
            if direction == "outbound"}


async def settled(daemon: Daemon, fake: FakeIterable) -> bool:
    return "pending" not in await counts(daemon) and fake.idle


def sign_up_burst(n: int) -> list[dict[str, Any]]:
    """A new user's first second: identify, tracks, a purchase, a cart update and an email change."""
    email, new = f"n{n}@example.com", f"new{n}@example.com"
    traits = {"traits": {"email": email}}
    return [
        {"type": "identify", "userId": f"n{n}", "messageId": f"{n}-identify", "traits": {"email": email, "plan": "free"}},
        {"type": "track", "userId": f"n{n}", "event": "Signed Up", "messageId": f"{n}-signed", "context": traits},
        {"type": "track", "userId": f"n{n}", "event": "Order Completed", "messageId": f"{n}-order", "context": traits,
         "properties": {"order_id": f"o{n}", "total": 10,
                        "products": [{"product_id": "p", "name": "P", "price": 10, "quantity": 1}]}},
        {"type": "track", "userId": f"n{n}", "event": "Cart Updated", "messageId": f"{n}-cart", "context": traits,
         "properties": {"products": [{"product_id": "q", "name": "Q", "price": 1, "quantity": 2}]}},
        {"type": "alias", "previousId": email, "userId": new, "messageId": f"{n}-alias"},
        {"type": "track", "userId": f"n{n}", "event": "Viewed", "messageId": f"{n}-viewed",
         "context": {"traits": {"email": new}}},
    ]


@pytest.mark.parametrize("project_type", ["email", "userId", "hybrid"])
async def test_a_burst_of_sign_ups_is_delivered_despite_the_creation_lag(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str], project_type: str) -> None:
    """Users become visible 1.5 s after creation (Iterable: up to 60 s; the reliability suite runs 60 s).
    Before: a "not found" was retried 5 times over ~7 s and then dead-lettered."""
    fake, _ = fake_iterable
    async with project(stack_config, ledger_url, fake, project_type, visibility_lag=1.5, bulk_delay=0.2,
                       single_delay=0.2) as daemon:
        fake.add_users(1, "old")
        batch = [e for n in range(8) for e in sign_up_burst(n)]
        established = {"type": "track", "userId": "old0", "event": "Still Here", "messageId": "old-1",
                       "context": {"traits": {"email": "old0@example.com"}}}
        sent = time.monotonic()
        assert (await post(daemon, "/v1/batch", {"batch": [*batch, established]}))[0] == 200
        await wait_for(lambda: any(e.get("id") == "old-1" for e in fake.event_log), within=5)
        assert time.monotonic() - sent < 1.5  # an established user does not wait for the new ones
        await wait_for(lambda: settled(daemon, fake), within=60)
        final = await counts(daemon)
    aliases = 8 if project_type != "userId" else 0
    assert final == {"delivered": 8 * 6 + 1 - (8 - aliases), **({"skipped": 8} if not aliases else {})}
    assert len(fake.purchases) == 8 and len(fake.email_changes) == aliases
    assert {e["eventName"] for e in fake.event_log} == {"Signed Up", "Viewed", "Still Here"}


async def test_one_person_one_processing_order_across_iterables_two_queues(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Bulk and single calls are applied in separate queues after random delays (up to 0.45 s here). A
    purchase's stale context.traits must not overwrite the identify that came after it, and an alias must
    not race the identify that created the user. Before: the purchase went single while the identifies
    went bulk, so whichever queue ran last won."""
    fake, _ = fake_iterable
    buyers, movers = range(0, 10), range(10, 16)
    async with project(stack_config, ledger_url, fake, "hybrid", bulk_delay=0.45, single_delay=0.45,
                       seed=7) as daemon:
        for step in ("first", "middle", "second"):
            batch = []
            for n in (*buyers, *movers):
                if step == "first":
                    batch.append({"type": "identify", "userId": f"q{n}", "messageId": f"q{n}-1",
                                  "traits": {"email": f"q{n}@example.com", "plan": "a"}})
                elif step == "middle" and n in buyers:
                    batch.append({"type": "track", "userId": f"q{n}", "event": "Order Completed",
                                  "messageId": f"q{n}-2", "context": {"traits": {"plan": "a"}},
                                  "properties": {"total": 3}})
                elif step == "middle":
                    batch.append({"type": "alias", "previousId": f"q{n}@example.com",
                                  "userId": f"q{n}-new@example.com", "messageId": f"q{n}-2"})
                else:
                    batch.append({"type": "identify", "userId": f"q{n}", "messageId": f"q{n}-3",
                                  "traits": {"plan": "b"}})
            assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
            await asyncio.sleep(0.05)
        await wait_for(lambda: settled(daemon, fake), within=30)
        final = await counts(daemon)
    assert final == {"delivered": 16 * 3}
    for n in (*buyers, *movers):
        user = fake.find_user(user_id=f"q{n}")
        assert user is not None and user["dataFields"]["plan"] == "b", (n, user)
        assert user["email"] == (f"q{n}-new@example.com" if n in movers else f"q{n}@example.com")
    assert len(fake.users) == 16  # no second profile from a race


@pytest.mark.parametrize("project_type", ["userId", "hybrid"])
async def test_an_identify_that_changes_email_changes_it_in_iterable(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str], project_type: str) -> None:
    """Before: both identifiers were sent; userId wins in these projects, so the email never changed
    while the ledger said delivered."""
    fake, _ = fake_iterable
    async with project(stack_config, ledger_url, fake, project_type) as daemon:
        for n, email in enumerate(("first@example.com", "second@example.com")):
            event = {"type": "identify", "userId": "mover", "messageId": f"mv-{n}", "traits": {"email": email}}
            assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
            await wait_for(lambda: settled(daemon, fake))
    user = fake.find_user(user_id="mover")
    assert user is not None and user["email"] == "second@example.com"


async def test_an_email_project_changes_email_with_update_email(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    async with project(stack_config, ledger_url, fake, "email", visibility_lag=0.3) as daemon:
        batch = [{"type": "identify", "userId": "e1", "messageId": "em-1", "traits": {"email": "one@example.com"}},
                 {"type": "alias", "previousId": "one@example.com", "userId": "two@example.com",
                  "messageId": "em-2"}]
        assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
        await wait_for(lambda: settled(daemon, fake), within=20)
        assert await counts(daemon) == {"delivered": 2}
    assert [e for e, _ in fake.requests if e == "users/updateEmail"] and \
        fake.find_user(email="two@example.com") is not None


async def test_an_email_conflict_is_dead_lettered_with_iterables_reason_never_delivered(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Hybrid projects keep emails unique: taking another user's email is a conflict."""
    fake, _ = fake_iterable
    async with project(stack_config, ledger_url, fake, "hybrid") as daemon:
        owner = {"type": "identify", "userId": "owner", "messageId": "c-1", "traits": {"email": "taken@example.com"}}
        assert (await post(daemon, "/v1/batch", {"batch": [owner]}))[0] == 200
        await wait_for(lambda: settled(daemon, fake))
        thief = {"type": "identify", "userId": "thief", "messageId": "c-2", "traits": {"email": "taken@example.com"}}
        single = {"type": "track", "userId": "thief", "event": "Order Completed", "messageId": "c-3",
                  "properties": {"total": 1}, "context": {"traits": {"email": "taken@example.com"}}}
        assert (await post(daemon, "/v1/batch", {"batch": [thief]}))[0] == 200
        await wait_for(lambda: _status(daemon, "c-2", Status.DEAD))
        row = await daemon.ledger.get(OUT, "c-2")
        assert row is not None and "conflict" in (row.reason or "").lower()
        assert (await post(daemon, "/v1/batch", {"batch": [single]}))[0] == 200
        await wait_for(lambda: settled(daemon, fake))
    assert fake.find_user(user_id="owner")["email"] == "taken@example.com"  # type: ignore[index]


async def _status(daemon: Daemon, key: str, status: Status) -> bool:
    row = await daemon.ledger.get(OUT, key)
    return row is not None and row.status is status


def realistic_event(n: int) -> dict[str, Any]:
    """A Segment event as the Webhooks (Actions) destination posts it by default: 2-3 KB with context."""
    return {
        "type": "track", "event": "Product Viewed", "userId": f"a{n % 50}", "anonymousId": f"anon-{n}",
        "messageId": f"actions-{n}", "timestamp": "2026-11-01T10:00:00.000Z", "sentAt": "2026-11-01T10:00:01.000Z",
        "receivedAt": "2026-11-01T10:00:01.200Z", "originalTimestamp": "2026-11-01T10:00:00.000Z",
        "properties": {"product_id": f"p{n}", "name": "Trail Shoe " * 5, "price": 99.5, "category": "Shoes",
                       "description": "A realistic description of a product. " * 32},
        "context": {"ip": "203.0.113.7", "locale": "en-GB", "library": {"name": "analytics.js", "version": "2.11"},
                    "page": {"path": "/p", "url": "https://shop.example.com/p?utm_source=news", "title": "Shoe",
                             "referrer": "https://news.example.com/article"},
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 " * 3,
                    "traits": {"email": f"a{n % 50}@example.com", "plan": "pro"},
                    "campaign": {"name": "autumn", "source": "news", "medium": "email"}},
        "integrations": {}, "writeKey": "redacted", "version": 2,
    }


async def test_a_webhooks_actions_batch_of_1000_realistic_events_is_accepted(daemon: Daemon) -> None:
    """Segment's default Actions batch is 1000 events (up to 4000); Segment drops a batch refused with 413."""
    events = [realistic_event(n) for n in range(1000)]
    first = json.dumps(events[0]).encode()
    raw = b"[" + first + b"," + b",".join(json.dumps(e).encode() for e in events[1:]) + b"]"
    assert 2_000_000 < len(raw) < 3_500_000 and all(2000 < len(json.dumps(e)) < 3000 for e in events[:5])
    started_at = time.monotonic()
    status, body = await post(daemon, "/segment/webhook", raw, {"X-Signature": sign(first)})
    assert (status, body) == (200, {"success": True})
    elapsed = time.monotonic() - started_at
    print(f"\nactions batch: 1000 events, {len(raw)} bytes, answered in {elapsed:.2f} s")
    assert elapsed < 10  # Segment's request timeout
    assert sum((await daemon.ledger.stats()).counts.values()) == 1000


async def send_webhook(daemon_url: str, webhook: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"{daemon_url}/iterable/webhook", json=webhook, headers={"Authorization": WEBHOOK_TOKEN}) as response:
        return response.status


async def test_inbound_events_that_differ_only_in_what_they_are_about_stay_two(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    """Before: without a messageId, two list subscriptions in one second hashed to one key."""
    segment, _ = fake_segment
    created = "2026-11-01 10:00:00 +00:00"
    hooks = [{"email": "s@example.com", "eventName": "emailSubscribe",
              "dataFields": {"createdAt": created, "emailListIds": [ids]}} for ids in (1, 2)]
    hooks += [{"email": "s@example.com", "eventName": "emailUnSubscribe",
               "dataFields": {"createdAt": created, "channelIds": [c], "campaignId": 5}} for c in (7, 8)]
    hooks += [{"email": "s@example.com", "eventName": "pushOpen",
               "dataFields": {"createdAt": created, "campaignId": c, "templateId": 9}} for c in (10, 11)]
    base = url(daemon, "")
    for hook in hooks + hooks:  # each sent twice: the retry is a duplicate
        assert await send_webhook(base, hook) == 200
    await wait_for(lambda: len(segment.messages) >= 6)
    await wait_for(lambda: _inbound_settled(daemon))
    assert len(segment.unique()) == 6 and len(segment.messages) == 6


async def _inbound_settled(daemon: Daemon) -> bool:
    counts = (await daemon.ledger.stats()).counts
    return not counts.get(("inbound", "pending")) and counts.get(("inbound", "delivered"), 0) > 0


async def test_webhooks_refused_across_a_restart_come_back_through_reconciliation(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str],
        fake_segment: tuple[FakeSegment, str]) -> None:
    """Iterable does not document retrying refused webhooks; this sender never retries. Reconciliation,
    on by default with inbound, reads them back from the export API."""
    fake, _ = fake_iterable
    segment, _ = fake_segment
    fake.enforce_rate_limits = False
    config = replace(stack_config, reconcile=replace(stack_config.reconcile, enabled=True,
                                                     event_types=("emailOpen",), lookback_minutes=60))
    sent: list[dict[str, Any]] = []
    refused = 0

    async def send(daemon_url: str, n: int) -> None:
        nonlocal refused
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S +00:00")
        hook = {"email": f"r{n}@example.com", "eventName": "emailOpen",
                "dataFields": {"createdAt": created, "messageId": f"restart-{n}", "campaignId": 3}}
        sent.append(hook)
        fake.export_records["emailOpen"].append({**hook["dataFields"], "email": hook["email"]})
        try:
            status = await send_webhook(daemon_url, hook)
        except aiohttp.ClientError:
            status = 0
        refused += status != 200  # and never sent again

    async with started(config, ledger_url) as first:
        base = url(first, "")
        for n in range(10):
            await send(base, n)
        first.health.draining = True  # shutting down: new webhooks get 503
        for n in range(10, 15):
            await send(base, n)
    for n in range(15, 20):  # the daemon is down
        await send(base, n)
    assert refused == 10
    async with started(config, ledger_url) as second:
        for n in range(20, 25):
            await send(url(second, ""), n)
        await wait_for(lambda: len(segment.unique()) == 25, within=20)  # the first reconcile runs 5 s after start
    assert sorted(segment.unique()) == sorted({m["messageId"] for m in segment.messages})


async def test_a_segment_that_drops_everything_still_answers_200(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    """The symptom of a write key of another region: nothing the daemon can see. check-config and the
    README say how to verify the link in Segment's debugger."""
    segment, _ = fake_segment
    segment.drop_all = True
    assert await send_webhook(url(daemon, ""), {"email": "d@example.com", "eventName": "emailOpen",
                                                "dataFields": {"createdAt": "2026-11-01 10:00:00 +00:00"}}) == 200
    await wait_for(lambda: _inbound_settled(daemon))
    assert segment.messages == [] and len(segment.dropped) == 1


async def test_segment_429_with_retry_after_is_waited_out(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str]) -> None:
    segment, _ = fake_segment
    from sync.sandbox import Fault

    segment.faults.add(Fault(status=429, retry_after="1", body={"code": "too_many_requests"}))
    assert await send_webhook(url(daemon, ""), {"email": "w@example.com", "eventName": "emailOpen",
                                                "dataFields": {"createdAt": "2026-11-01 10:00:00 +00:00"}}) == 200
    await wait_for(lambda: len(segment.messages) == 1, within=10)
    first, second = segment.hits[0], segment.hits[-1]
    assert second - first >= 1.0


async def test_bulk_requests_stay_under_4_000_000_bytes_on_the_wire(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Non-ASCII traits: 1000 identifies of about 6 KB of UTF-8 each must not meet a 413."""
    fake, _ = fake_iterable
    fake.enforce_rate_limits = False
    batch = [{"type": "identify", "userId": f"w{n}", "messageId": f"w-{n}",
              "traits": {"bio": "東京の猫" * 500}} for n in range(1000)]
    for at in range(0, 1000, 50):
        assert (await post(daemon, "/v1/batch", {"batch": batch[at:at + 50]}))[0] == 200
    await wait_for(lambda: settled(daemon, fake), within=30)
    assert await counts(daemon) == {"delivered": 1000}
    assert all(status != 413 for status in _statuses(daemon))


def _statuses(daemon: Daemon) -> list[int]:
    text = daemon.metrics.render().decode()
    return [int(line.split('status="')[1].split('"')[0]) for line in text.splitlines()
            if line.startswith("sync_upstream_requests_total{") and 'status="' in line
            and line.split('status="')[1].split('"')[0].isdigit()]


async def test_a_field_whose_type_changed_and_a_forgotten_user_are_dead_lettered_alone(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Iterable fixes a field's type with its first value, and refuses writes for forgotten users."""
    fake, _ = fake_iterable
    first = [{"type": "identify", "userId": f"t{n}", "messageId": f"t{n}-1", "traits": {"age": 30 + n}}
             for n in range(3)]
    assert (await post(daemon, "/v1/batch", {"batch": first}))[0] == 200
    await wait_for(lambda: settled(daemon, fake))
    fake.project.forget(user_id="t2")
    second = [{"type": "identify", "userId": "t0", "messageId": "t0-2", "traits": {"age": "thirty"}},
              {"type": "identify", "userId": "t1", "messageId": "t1-2", "traits": {"age": 41}},
              {"type": "identify", "userId": "t2", "messageId": "t2-2", "traits": {"age": 50}}]
    assert (await post(daemon, "/v1/batch", {"batch": second}))[0] == 200
    await wait_for(lambda: settled(daemon, fake))
    dead = {r.key: r.reason for r in await daemon.ledger.rows(status=Status.DEAD)}
    assert set(dead) == {"t2-2"} and "forgottenUserIds" in (dead["t2-2"] or "")
    # the type guard (section 15) learned age's type from the first batch: refused at intake, never sent
    # (with outbound.type_guard = "off" Iterable refuses it in failedUpdates.invalidDataUserIds: test_guards)
    refused = await daemon.ledger.get(Direction.OUTBOUND, "t0-2")
    assert refused is not None and refused.status is Status.REJECTED and "dataFields.age" in (refused.reason or "")
    assert fake.find_user(user_id="t1")["dataFields"]["age"] == 41  # type: ignore[index]
