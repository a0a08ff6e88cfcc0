"""Upstream fault matrix, per destination: everything is delivered once the fault ends, Retry-After is
honoured, retries spread out, a bad item is dead-lettered alone, and one failing destination does not
slow the other direction."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon
from sync.model import Status
from sync.sandbox import FakeIterable, FakeSegment, Fault
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.reliability.conftest import BASIC, known_users
from tests.support import WEBHOOK_TOKEN, wait_for

FAULTS: dict[str, Callable[[], list[Fault]]] = {
    "5xx storm": lambda: [Fault(status=503, times=5), Fault(status=500, times=1), Fault(status=502, times=1)],
    "429 with Retry-After": lambda: [Fault(status=429, retry_after="1", times=1)],
    "429 without Retry-After": lambda: [Fault(status=429, times=3)],
    "added latency": lambda: [Fault(mode="slow", delay=0.6, times=3)],
    "hanging upstream": lambda: [Fault(mode="hang", times=2)],
    "connection resets": lambda: [Fault(mode="reset", times=3)],
}


async def post(daemon: Daemon, path: str, body: Any, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{daemon.address[1]}{path}", json=body, headers=headers) as response:
        return response.status


def fast_timeouts(daemon: Daemon) -> None:
    daemon.workers[0].sink.client.timeout = aiohttp.ClientTimeout(total=1)  # type: ignore[attr-defined]
    daemon.workers[1].sink.timeout = 1  # type: ignore[attr-defined]


async def outbound_traffic(daemon: Daemon, fake: FakeIterable, count: int = 30) -> set[str]:
    known_users(fake)
    ids = {f"f-{n}" for n in range(count)}
    batch = [{"type": "track", "userId": f"k{n % 25}", "event": "Fault", "messageId": i} for n, i in enumerate(ids)]
    assert await post(daemon, "/v1/batch", {"batch": batch}, BASIC) == 200
    return ids


async def inbound_traffic(daemon: Daemon) -> int:
    for webhook in ITERABLE_WEBHOOKS:
        assert await post(daemon, "/iterable/webhook", webhook, {"Authorization": WEBHOOK_TOKEN}) == 200
    return len(ITERABLE_WEBHOOKS)


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_iterable_faults_end_with_everything_delivered_once(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], fault: str) -> None:
    fake, _ = fake_iterable
    fast_timeouts(daemon)
    fake.faults.add(*FAULTS[fault]())
    ids = await outbound_traffic(daemon, fake)
    await wait_for(lambda: set(fake.events) == ids, within=30)
    await wait_for(lambda: _settled(daemon, 30))
    assert len(fake.event_log) - len(fake.events) <= 30  # a timed-out request may have landed: same ids
    if fault == "429 with Retry-After":
        times = [t for endpoint, t in fake.hits if endpoint == "events/trackBulk"]
        assert times[1] - times[0] >= 1.0


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_segment_faults_end_with_everything_delivered_once(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str], fault: str) -> None:
    fake, _ = fake_segment
    fast_timeouts(daemon)
    fake.faults.add(*FAULTS[fault]())
    count = await inbound_traffic(daemon)
    await wait_for(lambda: len(fake.unique()) == count, within=30)
    await wait_for(lambda: _settled(daemon, count))
    if fault == "429 with Retry-After":
        assert fake.hits[1] - fake.hits[0] >= 1.0


async def _settled(daemon: Daemon, count: int) -> bool:
    return sum(n for (_, status), n in (await daemon.ledger.stats()).counts.items()
               if status == Status.DELIVERED) == count


async def test_retries_of_many_rows_spread_out_instead_of_storming_together(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """30 purchases fail at once; their retries are jittered over the backoff window, not synchronized."""
    fake, _ = fake_iterable
    daemon.workers[0].retry_base = 2.0
    fake.faults.add(Fault(endpoint="trackPurchase", status=503, times=30))
    batch = [{"type": "track", "userId": f"p{n}", "event": "Order Completed", "messageId": f"o{n}",
              "properties": {"order_id": f"order-{n}", "total": 1}} for n in range(30)]
    assert await post(daemon, "/v1/batch", {"batch": batch}, BASIC) == 200
    await wait_for(lambda: len(fake.purchases) == 30, within=20)
    times = [t for endpoint, t in fake.hits if endpoint == "commerce/trackPurchase"]
    first_round_end, retries = times[29], times[30:]
    assert len(retries) == 30
    offsets = sorted(t - first_round_end for t in retries)
    assert offsets[-1] - offsets[0] > 0.8  # spread over the 2 s window, not one burst
    assert len({round(o, 1) for o in offsets}) >= 8


async def test_a_bad_item_is_dead_lettered_alone_in_each_direction(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], fake_segment: tuple[FakeSegment, str]) -> None:
    iterable, _ = fake_iterable
    segment, _ = fake_segment
    iterable.poison_emails = {"k3@example.com"}
    segment.poison_events = {"Email Bounced"}
    known_users(iterable)
    batch = [{"type": "identify", "userId": f"k{n}", "messageId": f"b{n}", "traits": {"email": f"k{n}@example.com",
                                                                                     "n": n}} for n in range(10)]
    assert await post(daemon, "/v1/batch", {"batch": batch}, BASIC) == 200
    count = await inbound_traffic(daemon)
    await wait_for(lambda: _dead(daemon, 2))
    await wait_for(lambda: len(segment.unique()) == count - 1)
    await wait_for(lambda: _settled(daemon, 9 + count - 1))
    dead = await daemon.ledger.rows(status=Status.DEAD)
    assert sorted(r.kind for r in dead) == ["emailBounce", "identify"]
    assert 'status="429"' not in daemon.metrics.render().decode()  # finding the bad item stayed under the limits
    await wait_for(lambda: iterable.idle)  # Iterable applied what it accepted
    fields = {n: iterable.find_user(user_id=f"k{n}")["dataFields"] for n in range(10)}  # type: ignore[index]
    assert {n: f.get("n") for n, f in fields.items()} == {n: (None if n == 3 else n) for n in range(10)}


async def _dead(daemon: Daemon, count: int) -> bool:
    return len(await daemon.ledger.rows(status=Status.DEAD)) == count


async def test_a_hanging_iterable_does_not_slow_segment_delivery(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], fake_segment: tuple[FakeSegment, str]) -> None:
    iterable, _ = fake_iterable
    segment, _ = fake_segment
    fast_timeouts(daemon)
    iterable.faults.add(Fault(mode="hang", times=10_000))
    await outbound_traffic(daemon, iterable)
    await wait_for(lambda: len(iterable.hits) >= 1)
    started = time.monotonic()
    count = await inbound_traffic(daemon)
    await wait_for(lambda: len(segment.unique()) == count, within=10)
    assert time.monotonic() - started < 2.0
    assert iterable.events == {}
