"""Ingest: the daemon's HTTP intake against a bare aiohttp app (same bodies, nothing stored) and against the
physical floor (raw driver inserts of the same rows with the same durability), both in the same run."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import ROOT, CountingIterable, Serve, database, free_port, healthy, served
from bench.ledger_ops import percentile
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.model import Direction
from tests.support import WRITE_KEY

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def track(n: int, run: str) -> dict[str, object]:
    return {"type": "track", "userId": f"b{n % 100}", "event": "Bench", "messageId": f"{run}-{n}",
            "properties": {"n": n, "plan": "pro", "at": "2026-01-01T00:00:00Z"}}


async def batched(url: str, count: int, run: str, clients: int = 4) -> float:
    """Events/s acknowledged on ``/v1/batch`` with 100 events a request."""
    bodies = iter([json.dumps({"batch": [track(n, run) for n in range(at, at + 100)]}).encode()
                   for at in range(0, count, 100)])

    async def client(session: aiohttp.ClientSession) -> None:
        for body in bodies:
            async with session.post(f"{url}/v1/batch", data=body, headers={**BASIC, "Content-Type": "application/json"}) as r:
                assert r.status == 200, await r.text()

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return count / (time.perf_counter() - started)


async def single(url: str, count: int, run: str, clients: int = 32) -> float:
    """Events/s acknowledged on ``/v1/track``, one event a request."""
    bodies = iter([json.dumps(track(n, run)).encode() for n in range(count)])

    async def client(session: aiohttp.ClientSession) -> None:
        for body in bodies:
            async with session.post(f"{url}/v1/track", data=body, headers={**BASIC, "Content-Type": "application/json"}) as r:
                assert r.status == 200

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return count / (time.perf_counter() - started)


async def latency_at(url: str, rate: float, seconds: float, run: str) -> dict[str, float]:
    """Open-loop single events at ``rate`` per second: the latency of each 200 (ms)."""
    waits: list[float] = []

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        started = time.perf_counter()
        async with session.post(f"{url}/v1/track", json=track(n, run), headers=BASIC) as r:
            assert r.status == 200
        waits.append((time.perf_counter() - started) * 1000)

    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        begin = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n)))
        await asyncio.gather(*tasks)
    return {"rate": rate, "p50_ms": percentile(waits, 0.5), "p99_ms": percentile(waits, 0.99)}


async def big_batch_stall(url: str, run: str) -> dict[str, float]:
    """A 1 MiB ``/v1/batch`` of small events while ``/healthz`` and single events are asked every 20 ms: the
    slowest answer of each (ms), and how long the big batch took (s)."""
    batch = [{"type": "track", "userId": f"s{n % 500}", "event": "E", "messageId": f"{run}-{n}"}
             for n in range(14_000)]
    body = json.dumps({"batch": batch}, separators=(",", ":")).encode()
    waits: dict[str, list[float]] = {"healthz": [], "single": []}
    done = asyncio.Event()

    async def poll(session: aiohttp.ClientSession) -> None:
        n = 0
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(f"{url}/healthz") as r:
                assert r.status == 200
            waits["healthz"].append((time.perf_counter() - started) * 1000)
            started, n = time.perf_counter(), n + 1
            async with session.post(f"{url}/v1/track", json=track(n, f"{run}-beside"), headers=BASIC) as r:
                assert r.status == 200
            waits["single"].append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession() as session:
        poller = asyncio.create_task(poll(session))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        async with session.post(f"{url}/v1/batch", data=io.BytesIO(body),
                                headers={**BASIC, "Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()
        took = time.perf_counter() - started
        done.set()
        await poller
    return {"bytes": len(body), "seconds": took, "healthz_max_ms": max(waits["healthz"]),
            "single_max_ms": max(waits["single"])}


def _rows(count: int, run: str) -> list[tuple[Any, ...]]:
    """What intake stores for each event: the payload and the frozen call, as JSON text."""
    now = "2026-11-28 00:00:00.000000"
    out = []
    for n in range(count):
        event = track(n, run)
        mapped = {"endpoint": "events/track", "body": {"eventName": "Bench", "userId": event["userId"],
                                                      "id": event["messageId"], "dataFields": event["properties"]}}
        out.append(("outbound", event["messageId"], "track", f"u:{event['userId']}", "pending", 0, now,
                    json.dumps(event), now, now, now, json.dumps(mapped)))
    return out


INSERT = ("INSERT INTO events (direction, key, kind, user_key, status, attempts, next_attempt_at, payload,"
          " received_at, updated_at, retry_from, mapped) VALUES ({})")


async def floor(kind: str, count: int, per_commit: int, run: str) -> float:
    """Rows/s of raw driver inserts into the migrated ledger, ``per_commit`` rows a transaction, with the
    ledger's durability (SQLite WAL + synchronous=FULL; PostgreSQL's default synchronous commit)."""
    rows = _rows(count, run)
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        await engine.dispose()
        if kind == "sqlite":
            connection = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            sql = INSERT.format(",".join("?" * 12))
            started = time.perf_counter()
            for at in range(0, count, per_commit):
                connection.execute("BEGIN")
                connection.executemany(sql, rows[at:at + per_commit])
                connection.execute("COMMIT")
            elapsed = time.perf_counter() - started
            connection.close()
        else:
            connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
            sql = INSERT.format(",".join(f"${i}" for i in range(1, 13))).replace("$7", "$7::timestamptz").replace(
                "$9", "$9::timestamptz").replace("$10", "$10::timestamptz").replace("$11", "$11::timestamptz")
            sql = sql.replace("$8", "$8::json").replace("$12", "$12::json")
            started = time.perf_counter()
            for at in range(0, count, per_commit):
                async with connection.transaction():
                    await connection.executemany(sql, [(*r[:6], _ts(r[6]), r[7], _ts(r[8]), _ts(r[9]), _ts(r[10]), r[11])
                                                       for r in rows[at:at + per_commit]])
            elapsed = time.perf_counter() - started
            await connection.close()
    return count / elapsed


def _ts(text: str) -> Any:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def daemon_ingest(kind: str, batched_count: int, single_count: int) -> dict[str, float]:
    """The daemon (a serve process, delivering to a counting stand-in meanwhile) against the bare app."""
    out: dict[str, float] = {}
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port)], cwd=ROOT)
    try:
        await healthy(f"http://127.0.0.1:{port}", alive=lambda: bare.poll() is None)
        out["bare_batched"] = await batched(f"http://127.0.0.1:{port}", batched_count, "bare")
        out["bare_single"] = await single(f"http://127.0.0.1:{port}", single_count, "bare")
    finally:
        bare.terminate()
        bare.wait(10)
    counting = CountingIterable()
    with tempfile.TemporaryDirectory() as folder:
        async with database(kind) as url, served(counting.app()) as iterable_url:
            engine = create_engine(url)  # outbound paused by an operator: ingest alone is measured
            await migrate.upgrade(engine)
            await Ledger(engine).pause(Direction.OUTBOUND, "bench: ingest only", datetime.now(UTC), kind="manual")
            await engine.dispose()
            serve = Serve(Path(folder), url, iterable_url)
            try:
                await serve.ready()
                out["http_batched"] = await batched(serve.url, batched_count, "b")
                out["http_single"] = await single(serve.url, single_count, "s")
                half = await latency_at(serve.url, out["http_single"] / 2, 8.0, "h")
                out["single_p50_ms_at_half"], out["single_p99_ms_at_half"] = half["p50_ms"], half["p99_ms"]
                stall = await big_batch_stall(serve.url, "big")
                out["big_batch_healthz_max_ms"], out["big_batch_single_max_ms"] = (stall["healthz_max_ms"],
                                                                                   stall["single_max_ms"])
            finally:
                await serve.stop()
    return out
