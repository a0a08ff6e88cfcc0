"""Benchmarks (``make bench``): ingest and delivery throughput on this machine, with baselines.

Ingest: events acknowledged per second over HTTP, batched (/v1/batch, 100 per request) and single
(/v1/track, 32 concurrent clients), against a baseline that writes the same rows straight into the ledger
without HTTP. Delivery: events per second from the ledger into the fake Iterable.
Each figure is the median of three runs. Not a test: nothing here asserts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from sync.config import Config
from sync.daemon import Daemon, running
from sync.ledger import Direction, Ledger, NewEvent, migrate
from sync.ledger.store import create_engine
from sync.sandbox import FakeIterable, FakeSegment
from tests.support import ITERABLE_KEY, SEGMENT_KEY, WRITE_KEY, make_config

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
RUNS = 3


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"sync_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def stack(url: str, *, deliver: bool) -> AsyncIterator[tuple[Daemon, FakeIterable]]:
    iterable, segment = FakeIterable(ITERABLE_KEY, enforce_rate_limits=False), FakeSegment(SEGMENT_KEY)
    iterable.add_users(100, "b")
    servers = [TestServer(iterable.app(), host="127.0.0.1"), TestServer(segment.app(), host="127.0.0.1")]
    for server in servers:
        await server.start_server()
    config: Config = make_config(ledger_url=url, iterable_url=str(servers[0].make_url("")).rstrip("/"),
                                 segment_url=str(servers[1].make_url("")).rstrip("/"),
                                 iterable={"rate_limits": {"events/trackBulk": 1000, "users/bulkUpdate": 1000}})
    if not deliver:
        config = replace(config, outbound=replace(config.outbound, enabled=True))
    try:
        async with running(config) as daemon:
            if not deliver:
                for worker in daemon.workers:
                    worker.stop()
            yield daemon, iterable
    finally:
        for server in servers:
            await server.close()


def track(n: int, run: str) -> dict[str, object]:
    return {"type": "track", "userId": f"b{n % 100}", "event": "Bench", "messageId": f"{run}-{n}",
            "properties": {"n": n, "plan": "pro", "at": "2026-01-01T00:00:00Z"}}


async def http_batched(daemon: Daemon, count: int, run: str) -> float:
    url = f"http://127.0.0.1:{daemon.address[1]}/v1/batch"
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for at in range(0, count, 100):
            body = {"batch": [track(n, run) for n in range(at, min(at + 100, count))]}
            async with session.post(url, json=body, headers=BASIC) as response:
                assert response.status == 200
    return count / (time.perf_counter() - started)


async def http_single(daemon: Daemon, count: int, run: str, clients: int = 32) -> float:
    url = f"http://127.0.0.1:{daemon.address[1]}/v1/track"
    numbers = iter(range(count))
    started = time.perf_counter()

    async def client(session: aiohttp.ClientSession) -> None:
        for n in numbers:
            async with session.post(url, json=track(n, run), headers=BASIC) as response:
                assert response.status == 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return count / (time.perf_counter() - started)


async def direct_batched(ledger: Ledger, count: int, run: str) -> float:
    started = time.perf_counter()
    for at in range(0, count, 100):
        rows = [NewEvent(direction=Direction.OUTBOUND, key=f"{run}-{n}", kind="track", payload=track(n, run),
                         user_key=f"b{n % 100}") for n in range(at, min(at + 100, count))]
        await ledger.record(rows, datetime.now(UTC))
    return count / (time.perf_counter() - started)


async def direct_single(ledger: Ledger, count: int, run: str, clients: int = 32) -> float:
    numbers = iter(range(count))
    started = time.perf_counter()

    async def client() -> None:
        for n in numbers:
            row = NewEvent(direction=Direction.OUTBOUND, key=f"{run}-{n}", kind="track", payload=track(n, run),
                           user_key=f"b{n % 100}")
            await ledger.record([row], datetime.now(UTC))

    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - started)


async def delivery(url: str, count: int, run: str) -> float:
    async with stack(url, deliver=False) as (daemon, _):
        await http_batched(daemon, count, run)
    async with stack(url, deliver=True) as (daemon, iterable):
        started = time.perf_counter()
        for _ in range(600_000):
            if len(iterable.events) >= count:
                break
            await asyncio.sleep(0.001)
        return count / (time.perf_counter() - started)


async def median(name: str, measure: Callable[[str], Awaitable[float]]) -> float:
    runs = []
    for run in range(RUNS):
        runs.append(await measure(f"r{run}-{uuid.uuid4().hex[:6]}"))
        print(f"  {name} run {run + 1}: {runs[-1]:,.0f} events/s", file=sys.stderr, flush=True)
    return statistics.median(runs)


async def bench(kind: str) -> dict[str, float]:
    results: dict[str, float] = {}
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        ledger = Ledger(engine)
        results["direct_batched"] = await median(f"{kind} direct_batched", lambda run: direct_batched(ledger, 5000, run))
        results["direct_single"] = await median(f"{kind} direct_single", lambda run: direct_single(ledger, 2000, run))
        await engine.dispose()
        async with stack(url, deliver=False) as (daemon, _):
            results["http_batched"] = await median(f"{kind} http_batched", lambda run: http_batched(daemon, 5000, run))
            results["http_single"] = await median(f"{kind} http_single", lambda run: http_single(daemon, 2000, run))
    async with database(kind) as url:
        results["delivery"] = await median(f"{kind} delivery", lambda run: delivery(url, 5000, run))
    return results


async def main() -> int:
    report = {kind: await bench(kind) for kind in ("sqlite", "postgresql")}
    print(json.dumps(report, indent=2))
    print(f"\n{'events/s':<22}{'sqlite':>12}{'postgresql':>14}")
    for name in ("direct_batched", "http_batched", "direct_single", "http_single", "delivery"):
        print(f"{name:<22}{report['sqlite'][name]:>12,.0f}{report['postgresql'][name]:>14,.0f}")
    for kind, r in report.items():
        print(f"{kind}: HTTP/direct batched {r['http_batched'] / r['direct_batched']:.2f}, "
              f"single {r['http_single'] / r['direct_single']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
