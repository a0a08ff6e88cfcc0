"""The console at a million rows (issue 23): every page's response time, on SQLite and PostgreSQL.

Setup (not measured): a migrated ledger gets ``--rows`` rows written straight into the tables, received 100 ms
apart up to now (so the last hour and day hold real traffic): 90% delivered, 5% dead (three reason classes),
3% rejected, 1% skipped, 1% pending, 50 event names, 10,000 people; an attempt per dead row; the 5-minute
counters a day of that traffic leaves (every event name failing in every bucket: the worst case). Outbound is
paused by an operator, so nothing else runs. Then a real ``serve`` process with the console is asked for each
page: one warm-up, then ``--repeat`` timed requests; the median and the slowest are reported. Not a test.

    python -m bench.console [--rows 1000000] [--repeat 5] [--kinds sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import CountingIterable, Serve, database, served
from sync.ledger import migrate
from sync.ledger.history import bucket_of
from sync.ledger.store import create_engine
from sync.model import LATENCY_EDGES, reason_class

TOKEN = "bench-console-token-0123456789"
NAMES = 50
USERS = 10_000
STEP = timedelta(milliseconds=100)
REASONS = ('Iterable rejected the item: disallowedEventNames (event "Event {k}")', "HTTP 400 BadParams: invalid",
           "gave up after 12 attempts: HTTP 503 GenericError")


def name_of(n: int) -> int:
    return (n // 100) % NAMES  # every event name meets every status and reason


def status_of(n: int) -> tuple[str, str | None]:
    share = n % 100
    if share < 90:
        return "delivered", None
    if share < 95:
        return "dead", REASONS[n % 3].format(k=name_of(n))
    if share < 98:
        return "rejected", "properties.total: required"
    return ("skipped", "group is not supported by Iterable") if share < 99 else ("pending", None)


def row(n: int, start: datetime) -> tuple[Any, ...]:
    status, reason = status_of(n)
    at = start + STEP * n
    name = f"Event {name_of(n)}"
    body = {"type": "track", "userId": f"b{n % USERS}", "event": name, "messageId": f"m-{n}",
            "properties": {"n": n, "plan": "pro"}}
    mapped = {"endpoint": "events/track", "body": {"eventName": name, "userId": f"b{n % USERS}", "id": f"m-{n}"}}
    return ("outbound", f"m-{n}", "track", f"u:b{n % USERS}", status, 1 if status != "pending" else 0, at,
            json.dumps(body), at, at, at, json.dumps(mapped), name, reason, reason_class(reason) if reason else None)


COLUMNS = ("direction, key, kind, user_key, status, attempts, next_attempt_at, payload, received_at, updated_at,"
           " retry_from, mapped, name, reason, reason_class")


def counter_rows(now: datetime) -> list[tuple[Any, ...]]:
    """A day of 5-minute buckets for the traffic above (3,000 events a bucket)."""
    rows: list[tuple[Any, ...]] = []
    bucket = bucket_of(now) - timedelta(hours=24)
    while bucket <= now:
        rows.append((bucket, "outbound", "delivered", "", 2700.0))
        rows += [(bucket, "outbound", "failed", f"{c}|Event {k}", 1.0)
                 for c in ("disallowed event name", "upstream refused (4xx)", "gave up retrying") for k in range(NAMES)]
        rows += [(bucket, "outbound", "latency_count", f"{edge:g}", 170.0) for edge in LATENCY_EDGES[:16]]
        bucket += timedelta(minutes=5)
    return rows


async def seed(kind: str, url: str, count: int, now: datetime) -> None:
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    start = now - STEP * count
    if kind == "sqlite":
        _seed_sqlite(url.split(":///", 1)[1], count, start, now)
    else:
        await _seed_postgres(url, count, start, now)


def _text(value: Any) -> Any:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def _seed_sqlite(path: str, count: int, start: datetime, now: datetime) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        marks = ",".join("?" * 15)
        for at in range(0, count, 50_000):
            rows = [tuple(_text(v) for v in row(n, start)) for n in range(at, min(at + 50_000, count))]
            connection.executemany(f"INSERT INTO events ({COLUMNS}) VALUES ({marks})", rows)
            connection.commit()
        _finish_sqlite(connection, now)
    finally:
        connection.close()


def _finish_sqlite(connection: sqlite3.Connection, now: datetime) -> None:
    connection.execute("INSERT INTO attempts (event_id, at, outcome, endpoint, http_status, detail) SELECT id,"
                       " updated_at, 'dead', 'events/trackBulk', 200, reason FROM events WHERE status = 'dead'")
    connection.executemany("INSERT INTO counters VALUES (?,?,?,?,?)",
                           [tuple(_text(v) for v in r) for r in counter_rows(now)])
    connection.execute("INSERT INTO downtime (direction, kind, reason, started_at) VALUES "
                       "('outbound', 'manual', 'bench: pages only', ?)", (_text(now),))
    connection.commit()
    connection.execute("ANALYZE")
    connection.commit()


async def _seed_postgres(url: str, count: int, start: datetime, now: datetime) -> None:
    connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        for at in range(0, count, 50_000):
            rows = [row(n, start) for n in range(at, min(at + 50_000, count))]
            await connection.copy_records_to_table("events", records=rows, columns=[c.strip() for c in
                                                                                    COLUMNS.split(",")])
        await connection.execute("INSERT INTO attempts (event_id, at, outcome, endpoint, http_status, detail) "
                                 "SELECT id, updated_at, 'dead', 'events/trackBulk', 200, reason FROM events "
                                 "WHERE status = 'dead'")
        await connection.copy_records_to_table("counters", records=counter_rows(now))
        await connection.execute("INSERT INTO downtime (direction, kind, reason, started_at) VALUES "
                                 "('outbound', 'manual', 'bench: pages only', $1)", now)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def pages(count: int) -> list[tuple[str, str]]:
    """(what, path) for every console page an operator opens."""
    dead = next(n for n in range(count // 2, count) if status_of(n)[0] == "dead")
    return [
        ("overview", "/console"),
        ("overview refresh (htmx)", "/console/overview"),
        ("dead letters", "/console/rows?status=dead"),
        ("dead letters, page 2", "__next__"),
        ("dead letters by event name", "/console/rows?status=dead&name=Event+7"),
        ("dead letters by messageId", f"/console/rows?status=dead&message_id=m-{dead}"),
        ("dead letters by person", f"/console/rows?status=dead&person=b{dead % USERS}"),
        ("dead letters by reason text", "/console/rows?status=dead&reason=BadParams"),
        ("rejected", "/console/rows?status=rejected"),
        ("skipped", "/console/rows?status=skipped"),
        ("failure groups (dead)", "/console/groups?status=dead"),
        ("a failure group's rows", "/console/rows?" + "status=dead&direction=outbound&class=disallowed+event+name"
                                                      "&name=Event+7"),
        ("a row and its history", "__row__"),
        ("a person's timeline", f"/console/person?q=b{dead % USERS}"),
        ("live tail", "/console/tail"),
        ("live tail by event name", "/console/tail/part?name=Event+7"),
    ]


async def timed(session: aiohttp.ClientSession, url: str, repeat: int) -> tuple[float, float, str]:
    async with session.get(url) as reply:  # warm-up
        text = await reply.text()
        assert reply.status == 200, (url, reply.status, text[:300])
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        async with session.get(url) as reply:
            text = await reply.text()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times), text


async def measure(kind: str, count: int, repeat: int) -> dict[str, tuple[float, float]]:
    now = datetime.now(UTC)
    results: dict[str, tuple[float, float]] = {}
    async with database(kind) as url, served(CountingIterable().app()) as iterable_url:
        began = time.monotonic()
        await seed(kind, url, count, now)
        print(f"[{kind}] {count:,} rows written in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as folder:
            serve = Serve(Path(folder), url, iterable_url, extra=f'[console]\nenabled = true\ntokens = ["{TOKEN}"]\n')
            try:
                await serve.ready(within=300)
                jar = aiohttp.CookieJar(unsafe=True)
                async with aiohttp.ClientSession(cookie_jar=jar) as session:
                    async with session.post(f"{serve.url}/console/login", data={"token": TOKEN}) as reply:
                        assert reply.status == 200, reply.status
                    last = ""
                    for what, path in pages(count):
                        if path == "__next__":
                            path = html.unescape(re.findall(r'href="([^"]+)" rel="next"', last)[0])
                        elif path == "__row__":
                            path = re.findall(r'href="(/console/rows/\d+)"', last)[0]
                        median, slowest, last = await timed(session, serve.url + path, repeat)
                        results[what] = (median, slowest)
                        print(f"[{kind}] {what}: median {median:.0f} ms, slowest {slowest:.0f} ms", file=sys.stderr,
                              flush=True)
            finally:
                await serve.stop()
    return results


def report(results: dict[str, dict[str, tuple[float, float]]], count: int, repeat: int) -> str:
    kinds = list(results)
    head = "| page | " + " | ".join(f"{k} median / slowest (ms)" for k in kinds) + " |"
    lines = [head, "|---|" + "---:|" * len(kinds)]
    for what in results[kinds[0]]:
        cells = [f"{results[k][what][0]:.0f} / {results[k][what][1]:.0f}" for k in kinds]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    worst = max(v[1] for k in kinds for v in results[k].values())
    return (f"{count:,} rows in the ledger; {repeat} timed requests per page after one warm-up; slowest of all: "
            f"{worst:.0f} ms.\n\n" + "\n".join(lines))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="sqlite,postgresql")
    args = parser.parse_args()
    results = {kind: await measure(kind, args.rows, args.repeat) for kind in args.kinds.split(",")}
    print(report(results, args.rows, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
