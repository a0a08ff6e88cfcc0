"""Delivery: draining a backlog at Iterable's ceiling (one and three replicas), idle latency, memory at 1M rows.

The ceiling is the fake Iterable's own: it enforces ``events/trackBulk``'s 10 requests per second (a sliding
one-second window, 429 beyond) with 50 ms of latency, so a full drain is 10 x 1000 events a second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.backlog import postgres_backlog, sqlite_backlog
from bench.common import CountingIterable, Serve, database, served
from bench.ledger_ops import percentile
from sync.ledger import migrate
from sync.ledger.store import create_engine
from sync.sandbox import FakeIterable
from tests.support import ITERABLE_KEY, WRITE_KEY

CEILING = 10 * 1000  # events/s: events/trackBulk's 10 requests/s, 1000 events each
LATENCY = 0.05


async def _backlog(kind: str, url: str, count: int, users: int) -> None:
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    if kind == "sqlite":
        sqlite_backlog(url.split(":///", 1)[1], count, users)
    else:
        await postgres_backlog(url, count, users)


async def drain(kind: str, count: int, users: int, replicas: int = 1, latency: float = LATENCY) -> dict[str, float]:
    """Events/s from ``replicas`` serve processes draining ``count`` pending events into the fake (answering
    after ``latency`` seconds); the CPU microseconds per event of the serve processes and of this process (the
    fake), and the 1-minute load average at the end, so a noisy machine shows in the figures."""
    fake = FakeIterable(ITERABLE_KEY)  # rate limits enforced
    fake.add_users(users, "b")
    fake.faults.latency = latency
    async with database(kind) as url, served(fake.app()) as iterable_url:
        await _backlog(kind, url, count, users)
        with tempfile.TemporaryDirectory() as folder:
            processes = [Serve(Path(folder), url, iterable_url) for _ in range(replicas)]
            try:
                await asyncio.gather(*(p.ready() for p in processes))
                started, cpu, own = time.monotonic(), [p.cpu_seconds() for p in processes], time.process_time()
                while len(fake.events) < count:
                    await asyncio.sleep(0.01)
                elapsed = time.monotonic() - started
                serve_cpu = sum(p.cpu_seconds() for p in processes) - sum(cpu)
                fake_cpu = time.process_time() - own
            finally:
                await asyncio.gather(*(p.stop() for p in processes))
    bulk = [t for endpoint, t in fake.hits if endpoint == "events/trackBulk"]
    served_bulk = sum(1 for endpoint, _ in fake.requests if endpoint == "events/trackBulk")
    busiest = max(sum(1 for t in bulk if start <= t < start + 1.0) for start in bulk)
    rate = count / elapsed
    return {"events_per_s": rate, "share": rate / CEILING, "mean_batch": count / max(1, served_bulk),
            "refused_429": len(bulk) - served_bulk, "busiest_second": busiest,
            "serve_cpu_us_per_event": serve_cpu / count * 1e6, "fake_cpu_us_per_event": fake_cpu / count * 1e6,
            "load_average": os.getloadavg()[0]}


@contextlib.asynccontextmanager
async def _one_serve(kind: str, fake: FakeIterable) -> AsyncIterator[tuple[Serve, aiohttp.ClientSession, dict[str, str]]]:
    """One ready ``serve`` on a fresh ``kind`` ledger, delivering to ``fake``; a client session and the
    write key's Basic header to post to it."""
    async with database(kind) as url, served(fake.app()) as iterable_url:
        with tempfile.TemporaryDirectory() as folder:
            process = Serve(Path(folder), url, iterable_url)
            try:
                await process.ready()
                basic = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
                async with aiohttp.ClientSession() as session:
                    yield process, session, basic
            finally:
                await process.stop()


async def idle_latency(kind: str, events: int = 40, every: float = 0.3) -> dict[str, float]:
    """One event every 300 ms: time from the 200 to the fake Iterable receiving it (ms)."""
    fake = FakeIterable(ITERABLE_KEY)
    fake.add_users(100, "b")
    arrived: dict[str, float] = {}
    acked: dict[str, float] = {}
    async with _one_serve(kind, fake) as (process, session, basic):
        for n in range(events):
            key = f"idle-{n}"
            body = {"userId": f"b{n % 100}", "event": "Idle", "messageId": key}
            async with session.post(f"{process.url}/v1/track", json=body, headers=basic) as response:
                assert response.status == 200
            acked[key] = time.monotonic()
            # the fake runs on this loop: a 1 ms poll of what it has received times the arrival (the request
            # log cannot be matched to its hit times once requests go out concurrently)
            while key not in fake.events and time.monotonic() - acked[key] < 10:
                await asyncio.sleep(0.001)
            arrived[key] = time.monotonic()
            await asyncio.sleep(max(0.0, every - (arrived[key] - acked[key])))
    waits = [(arrived[k] - acked[k]) * 1000 for k in acked]
    return {"p50_ms": statistics.median(waits), "p99_ms": percentile(waits, 0.99), "max_ms": max(waits)}


def _purchase(n: int) -> tuple[str, dict[str, Any]]:
    product = {"product_id": "p1", "name": "Mug", "price": 10.0, "quantity": 1}
    return "/v1/track", {"userId": f"b{n}", "event": "Order Completed", "messageId": f"x-{n}-1",
                         "properties": {"order_id": f"o{n}", "total": 10.0, "products": [product]}}


# the cross-queue cases: (what goes first, then what is timed, the endpoints that may carry the timed call)
ACROSS: dict[str, tuple[Callable[[int], tuple[str, dict[str, Any]]], Callable[[int], tuple[str, dict[str, Any]]],
                        tuple[str, ...]]] = {
    # a purchase goes to the single queue (`commerce/trackPurchase`); the identify after it would be a
    # `users/bulkUpdate` and wait Iterable's 60 s buffer, unless it follows in the single queue as `users/update`
    "single_then_profile": (
        _purchase,
        lambda n: ("/v1/identify", {"userId": f"b{n}", "messageId": f"x-{n}-2", "traits": {"plan": "pro"}}),
        ("users/update", "users/bulkUpdate")),
    # an identify goes to the bulk queue; a subscription change after it would be `users/updateSubscriptions`
    # (single) and wait the buffer, unless it follows in the bulk queue as `users/bulkUpdateSubscriptions`
    "bulk_then_subscriptions": (
        lambda n: ("/v1/identify", {"userId": f"b{n}", "messageId": f"y-{n}-1", "traits": {"plan": "basic"}}),
        lambda n: ("/v1/identify", {"userId": f"b{n}", "messageId": f"y-{n}-2", "traits": {"emailListIds": [3]}}),
        ("users/updateSubscriptions", "users/bulkUpdateSubscriptions")),
}


async def idle_latency_across_queues(kind: str, people: int = 20, every: float = 0.3) -> dict[str, Any]:
    """For a person whose previous call went through Iterable's other queue: one person at a time, their first
    event, then (``every`` seconds after it reached the fake) the timed one; the time from its 200 to the fake
    receiving the call that carries it (ms), per case of ``ACROSS``: ``{case}_p50_ms``, ``_p99_ms``,
    ``_max_ms``, and ``{case}_via``: which endpoints carried the timed calls, with counts."""
    fake = FakeIterable(ITERABLE_KEY)
    fake.add_users(people, "b")
    out: dict[str, Any] = {}
    async with _one_serve(kind, fake) as (process, session, basic):

        async def send(path_body: tuple[str, dict[str, Any]], endpoints: tuple[str, ...]) -> tuple[float, str]:
            """Post; wait for a hit on one of ``endpoints`` after it: the wait in seconds, the endpoint."""
            seen = len(fake.hits)
            path, body = path_body
            async with session.post(f"{process.url}{path}", json=body, headers=basic) as response:
                assert response.status == 200, await response.text()
            acked = time.monotonic()
            while not (hit := [e for e, _ in fake.hits[seen:] if e in endpoints]):
                if time.monotonic() - acked > 90:
                    raise AssertionError(f"{path} {body['messageId']} never reached {endpoints}")
                await asyncio.sleep(0.001)
            return time.monotonic() - acked, hit[0]

        for case, (first, then, endpoints) in ACROSS.items():
            waits: list[float] = []
            carried: dict[str, int] = {}
            for n in range(people):
                await send(first(n), ("commerce/trackPurchase", "users/bulkUpdate", "users/update"))
                await asyncio.sleep(every)
                wait, endpoint = await send(then(n), endpoints)
                waits.append(wait * 1000)
                carried[endpoint] = carried.get(endpoint, 0) + 1
                await asyncio.sleep(every)
            out |= {f"{case}_p50_ms": statistics.median(waits), f"{case}_p99_ms": percentile(waits, 0.99),
                    f"{case}_max_ms": max(waits), f"{case}_via": " ".join(f"{e}:{n}" for e, n in carried.items())}
    return out


async def rss_at_a_million(kind: str, count: int = 1_000_000) -> dict[str, float]:
    """Peak resident memory of the serve process draining ``count`` pending events (MB), rate limits raised."""
    counting = CountingIterable()
    async with database(kind) as url, served(counting.app()) as iterable_url:
        await _backlog(kind, url, count, users=10_000)
        extra = '[iterable.rate_limits]\n"events/trackBulk" = 1000\n'
        with tempfile.TemporaryDirectory() as folder:
            process = Serve(Path(folder), url, iterable_url, extra=extra)
            try:
                await process.ready()
                started = time.monotonic()
                while counting.events < count:
                    await asyncio.sleep(0.5)
                elapsed = time.monotonic() - started
                peak = process.peak_rss_mb()
            finally:
                await process.stop()
    return {"peak_rss_mb": peak, "events_per_s": count / elapsed}


def report(results: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())


def main() -> None:
    """``python -m bench.drain KIND [COUNT] [USERS] [LATENCY] [REPLICAS]``: one drain, its figures on a line
    (run it from two checkouts in turn, A B A B, to compare two versions on a busy machine)."""
    import sys

    kind, *rest = sys.argv[1:] or ["sqlite"]
    count, users = (int(rest[0]) if rest else 30_000), (int(rest[1]) if len(rest) > 1 else 600)
    latency = float(rest[2]) if len(rest) > 2 else LATENCY
    replicas = int(rest[3]) if len(rest) > 3 else 1
    print(report(asyncio.run(drain(kind, count, users, replicas, latency))))


if __name__ == "__main__":
    main()
