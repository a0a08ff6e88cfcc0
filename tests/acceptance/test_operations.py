"""Operating the real process: two replicas on one PostgreSQL, database outages, SIGTERM draining."""

from __future__ import annotations

import asyncio
import base64
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from sync.ledger.store import Ledger, create_engine
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, Fault
from tests.conftest import _reset_pg
from tests.processes import free_port, http_json
from tests.support import WRITE_KEY, daemon_config, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def config_text(port: int, ledger_url: str, iterable_url: str, *, lease: float = 3.0) -> str:
    return daemon_config(port, ledger_url, iterable_url, "http://127.0.0.1:9", lease=lease)


async def send_tracks(url: str, ids: list[str], user_count: int) -> list[str]:
    """Post the events in small batches; return the messageIds acknowledged with 200."""
    acknowledged = []
    for at in range(0, len(ids), 5):
        chunk = ids[at:at + 5]
        batch = [{"type": "track", "userId": f"r{random.randrange(user_count)}", "event": "Replica Test",
                  "messageId": mid} for mid in chunk]
        try:
            status, _ = await http_json("POST", f"{url}/v1/batch", headers=BASIC, json={"batch": batch})
        except OSError:
            continue
        if status == 200:
            acknowledged.extend(chunk)
    return acknowledged


async def test_two_replicas_share_the_work_and_survive_a_kill(
        spawn: Any, pg_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    await _reset_pg(pg_url)
    fake.add_users(20, "r")
    fake.enforce_rate_limits = False
    fake.faults.latency = 0.15  # deliveries take time, so the kill lands mid-delivery
    ports = free_port(), free_port()
    one = spawn(config_text(ports[0], pg_url, iterable_url), port=ports[0], name="one.toml")
    two = spawn(config_text(ports[1], pg_url, iterable_url), port=ports[1], name="two.toml")
    await one.ready()
    await two.ready()
    ids = [f"rep-{n}" for n in range(400)]
    first = await asyncio.gather(send_tracks(one.url, ids[:100], 20), send_tracks(two.url, ids[100:200], 20))
    await wait_for(lambda: len(fake.events) >= 20, within=20)
    one.kill()  # SIGKILL, mid-delivery: its leases must expire and return to the pool
    second = await send_tracks(two.url, ids[200:], 20)
    acknowledged = first[0] + first[1] + second
    assert len(acknowledged) == 400
    await wait_for(lambda: set(acknowledged) <= set(fake.events), within=60)
    repeats = len(fake.event_log) - len(fake.events)
    assert repeats <= 200  # only rows in flight at the kill may go out again, with the same id
    ledger = Ledger(create_engine(pg_url))
    try:
        await wait_for(lambda: _all_delivered(ledger, 400), within=20)
        rows = await ledger.rows(status=Status.DELIVERED, limit=1000)
    finally:
        await ledger.close()
    assert await two.stop() == 0
    received = {row.key: row.id for row in rows}  # ledger id order is received order
    first_sent: dict[str, list[int]] = {}
    for event in fake.event_log:  # per user, first deliveries follow received order across replicas
        order = first_sent.setdefault(event["userId"], [])
        if received[event["id"]] not in order:
            order.append(received[event["id"]])
    assert all(order == sorted(order) for order in first_sent.values()), first_sent


async def _all_delivered(ledger: Ledger, count: int) -> bool:
    return (await ledger.stats()).counts.get(("outbound", "delivered"), 0) == count


async def test_ingest_is_503_while_postgresql_is_away_and_nothing_acknowledged_is_lost(
        spawn: Any, pg_url: str, tcp_proxy: Any, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    await _reset_pg(pg_url)
    fake.add_users(5, "r")
    fake.enforce_rate_limits = False
    port = free_port()
    ledger_url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{tcp_proxy.port}")
    serve = spawn(config_text(port, ledger_url, iterable_url), port=port)
    await serve.ready()
    acknowledged = await send_tracks(serve.url, [f"pre-{n}" for n in range(20)], 5)
    await tcp_proxy.cut()
    statuses = []
    for n in range(5):
        status, body = await http_json("POST", f"{serve.url}/v1/track", headers=BASIC,
                                       json={"userId": "r1", "event": "During", "messageId": f"during-{n}"})
        statuses.append(status)
        assert status == 503 and body == {"success": False, "error": "the ledger cannot commit right now; retry"}
    assert (await http_json("GET", f"{serve.url}/readyz"))[0] == 503
    await wait_for(lambda: "ledger unavailable, delivery waits" in serve.output())  # the worker met it too
    await tcp_proxy.open()
    await wait_for(lambda: _ready(serve.url), within=20)
    acknowledged += await send_tracks(serve.url, [f"post-{n}" for n in range(20)], 5)
    assert len(acknowledged) == 40
    await wait_for(lambda: set(acknowledged) <= set(fake.events), within=30)
    assert not any(mid.startswith("during-") for mid in fake.events)
    assert await serve.stop() == 0


async def _ready(url: str) -> bool:
    return (await http_json("GET", f"{url}/readyz"))[0] == 200


def _sent_all(fake: FakeIterable, ids: list[str]) -> Callable[[], bool]:
    wanted = set(ids)
    return lambda: wanted <= set(fake.events)


async def _draining(url: str) -> bool:
    status, body = await http_json("GET", f"{url}/readyz")
    return status == 503 and "shutting down" in str(body)


async def test_terminated_backends_are_reconnected_without_an_operator(
        spawn: Any, pg_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    await _reset_pg(pg_url)
    fake.add_users(5, "r")
    fake.enforce_rate_limits = False
    port = free_port()
    serve = spawn(config_text(port, pg_url, iterable_url), port=port)
    await serve.ready()
    acknowledged = await send_tracks(serve.url, [f"a-{n}" for n in range(20)], 5)
    name = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/test")
    try:
        for _ in range(3):
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", name)
            assert killed >= 1
            acknowledged += await send_tracks(serve.url, [f"b{_}-{n}" for n in range(10)], 5)
            # the worker reconnected too (its connections were ended): it delivers before the next kill
            await wait_for(_sent_all(fake, acknowledged), within=30)
    finally:
        await admin.close()
    await wait_for(lambda: set(acknowledged) <= set(fake.events), within=30)
    assert len(acknowledged) >= 40  # a request caught by the kill may get 503 (and be retried); none is lost
    assert await serve.stop() == 0


async def test_sigterm_drains_in_flight_deliveries_then_exits_0(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    fake.add_users(5, "r")
    fake.enforce_rate_limits = False
    fake.faults.add(Fault(endpoint="events/trackBulk", mode="slow", delay=2.0, times=1))
    port = free_port()
    ledger_url = f"sqlite:///{tmp_path}/drain.db"
    serve = spawn(config_text(port, ledger_url, iterable_url, lease=60), port=port)
    await serve.ready()
    acknowledged = await send_tracks(serve.url, [f"d-{n}" for n in range(10)], 5)
    await wait_for(lambda: any(e == "events/trackBulk" for e, _ in fake.hits))
    serve.process.send_signal(signal.SIGTERM)
    await wait_for(lambda: _draining(serve.url))
    status, body = await http_json("POST", f"{serve.url}/v1/track", headers=BASIC,
                                   json={"userId": "r1", "event": "Late", "messageId": "late-1"})
    assert status == 503 and "shutting down" in body["error"]
    assert await serve.wait() == 0
    ledger = Ledger(create_engine(ledger_url))
    try:
        delivered = {r.key for r in await ledger.rows(status=Status.DELIVERED, limit=100)}
        pending = await ledger.rows(status=Status.PENDING, direction=Direction.OUTBOUND, limit=100)
    finally:
        await ledger.close()
    assert delivered and delivered <= set(fake.events)  # the in-flight batch finished and was recorded
    assert delivered | {r.key for r in pending} == set(acknowledged)
    assert all(r.lease_owner is None for r in pending)  # leases given back, not left to expire
    assert "late-1" not in delivered | {r.key for r in pending}
