"""Benchmarks (``make bench``): issue 13's table, each figure next to its baseline measured in the same run.

Ingest (``bench.ingest``): a ``serve`` process against a bare aiohttp app parsing the same bodies, and
against raw driver inserts of the same rows. Delivery (``bench.drain``): draining a backlog into the fake
Iterable at its enforced 10 requests/s with 50 ms latency, by one replica and by three on one PostgreSQL;
idle latency; peak memory draining a million rows. Ledger (``bench.ledger_ops``): claims at 100k and 1M
pending rows, settling 2,000 retries. Not a test: nothing here asserts a target. Prints JSON and a table;
``--write`` replaces the generated part of BENCHMARKS.md. ``--quick`` uses smaller sizes.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import drain, ingest, ingest_profile, ledger_ops

KINDS = ("sqlite", "postgresql")
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


async def measure(quick: bool) -> dict[str, Any]:
    scale = 10 if quick else 1
    out: dict[str, Any] = {}
    for kind in KINDS:
        r: dict[str, Any] = {}
        step(f"{kind}: ingest")
        r["ingest"] = await ingest.daemon_ingest(kind, 20_000 // scale, 4_000 // scale)
        step(f"{kind}: raw insert floor")
        r["floor_batched"] = await ingest.floor(kind, 20_000 // scale, 100, "fb")
        r["floor_single"] = await ingest.floor(kind, 2_000 // scale, 1, "fs")
        step(f"{kind}: ingest profile")
        r["profile"] = await ingest_profile.profile(kind, 10_000 // scale)
        step(f"{kind}: drain 50k")
        r["drain"] = await drain.drain(kind, 50_000 // scale, 600)
        step(f"{kind}: drain 50k at 200 ms latency")
        r["drain_slow"] = await drain.drain(kind, 50_000 // scale, 600, latency=0.2)
        step(f"{kind}: claims")
        r["claim_100k"] = await ledger_ops.claims(kind, 100_000 // scale)
        r["claim_1m"] = await ledger_ops.claims(kind, 1_000_000 // scale)
        step(f"{kind}: settle")
        r["settle"] = await ledger_ops.settle_retries(kind)
        step(f"{kind}: idle latency")
        r["idle"] = await drain.idle_latency(kind, events=40 // (2 if quick else 1))
        r["idle_across"] = await drain.idle_latency_across_queues(kind, people=20 // (2 if quick else 1))
        step(f"{kind}: 1M drain memory")
        r["rss"] = await drain.rss_at_a_million(kind, 1_000_000 // scale)
        out[kind] = r
    step("postgresql: replicas")
    out["replicas"] = {n: await drain.drain("postgresql", 30_000 // scale, 600, replicas=n) for n in (1, 3)}
    return out


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def table(r: dict[str, Any]) -> str:
    s, p = r["sqlite"], r["postgresql"]

    def both(f: Any) -> str:
        return f"{f(s)} | {f(p)}"

    rows = [
        ("`/v1/batch` ingest (100 events/request, 4 clients), ratio to bare aiohttp (events/s: ours vs bare)",
         both(lambda x: f"{x['ingest']['http_batched'] / x['ingest']['bare_batched']:.3f} "
                        f"({x['ingest']['http_batched']:,.0f} vs {x['ingest']['bare_batched']:,.0f})"),
         ">= 20,000 / 10,000 events/s"),
        ("the same, ratio to raw driver inserts of the same rows, 100 per commit (rows/s)",
         both(lambda x: f"{x['ingest']['http_batched'] / x['floor_batched']:.2f} ({x['floor_batched']:,.0f})"),
         ">= 0.6"),
        ("single-event ingest (`/v1/track`, 32 clients), ratio to bare aiohttp",
         both(lambda x: f"{x['ingest']['http_single'] / x['ingest']['bare_single']:.3f} "
                        f"({x['ingest']['http_single']:,.0f} vs {x['ingest']['bare_single']:,.0f})"), ">= 0.35"),
        ("the same, ratio to one raw insert per commit (rows/s)",
         both(lambda x: f"{x['ingest']['http_single'] / x['floor_single']:.2f} ({x['floor_single']:,.0f})"), ""),
        ("ingest CPU per event (in-process): event loop = parse + map + record on the loop; other threads",
         both(lambda x: f"{x['profile']['loop_cpu_us']:.0f} us = {x['profile']['parse_us']:.0f} + "
                        f"{x['profile']['map_us']:.0f} + {x['profile']['record_on_loop_us']:.0f}; "
                        f"{x['profile']['other_threads_cpu_us']:.0f} us"), "about 40 us in all"),
        ("group commits of 4 senders of 100 events: rows per commit, mean / max",
         both(lambda x: f"{x['profile']['commit_rows_mean']:.0f} / {x['profile']['commit_rows_max']}"), ""),
        ("single-event p99 at half that load (p50)",
         both(lambda x: f"{x['ingest']['single_p99_ms_at_half']:.1f} ms ({x['ingest']['single_p50_ms_at_half']:.1f})"),
         "< 25 ms"),
        ("a 1 MiB `/v1/batch` (14,000 small events) being recorded: slowest `/healthz` / single event beside it",
         both(lambda x: f"{x['ingest']['big_batch_healthz_max_ms']:.0f} / {x['ingest']['big_batch_single_max_ms']:.0f} ms"),
         "< 100 ms"),
        ("drain of a 50k backlog (600 people), share of the ceiling (events/s; mean batch; 429s)",
         both(lambda x: f"{x['drain']['share']:.0%} ({x['drain']['events_per_s']:,.0f}; "
                        f"{x['drain']['mean_batch']:,.0f}; {x['drain']['refused_429']})"), ">= 90 %, full batches"),
        ("the same, Iterable answering in 200 ms (issue 19: one request at a time caps at 1/latency)",
         both(lambda x: f"{x['drain_slow']['share']:.0%} ({x['drain_slow']['events_per_s']:,.0f}; "
                        f"{x['drain_slow']['mean_batch']:,.0f}; {x['drain_slow']['refused_429']})"),
         ">= 90 %"),
        ("CPU per event during the 50 ms drain: serve / fake Iterable (load average)",
         both(lambda x: f"{x['drain']['serve_cpu_us_per_event']:.0f} / {x['drain']['fake_cpu_us_per_event']:.0f} µs "
                        f"({x['drain']['load_average']:.1f})"), ""),
        ("claim of 2,000 due rows, 100k pending: p50 / p99",
         both(lambda x: f"{x['claim_100k']['p50_ms']:.0f} / {x['claim_100k']['p99_ms']:.0f} ms"), ""),
        ("claim of 2,000 due rows, 1M pending: p50 / p99",
         both(lambda x: f"{x['claim_1m']['p50_ms']:.0f} / {x['claim_1m']['p99_ms']:.0f} ms"), "< 20 ms p99"),
        ("settling 2,000 retries: one statement (baseline: one UPDATE per row)",
         both(lambda x: f"{x['settle']['one_statement_ms']:.0f} ms ({x['settle']['row_by_row_ms']:.0f} ms)"),
         "one statement"),
        ("idle latency, 200 -> Iterable, one event every 300 ms: p50 / p99",
         both(lambda x: f"{x['idle']['p50_ms']:.0f} / {x['idle']['p99_ms']:.0f} ms"), "p50 < 50, p99 < 250 ms"),
        ("the same for a person whose previous call went through the other queue: after a purchase (single "
         "queue), an identify; after an identify (bulk queue), a subscription change: p50 / p99 each",
         both(lambda x: " ; ".join(f"{x['idle_across'][f'{c}_p50_ms']:.0f} / {x['idle_across'][f'{c}_p99_ms']:.0f} ms "
                                  f"({x['idle_across'][f'{c}_via']})"
                                  for c in drain.ACROSS)), "p50 < 50, p99 < 250 ms"),
        ("peak RSS draining a 1,000,000-event backlog (drain events/s)",
         both(lambda x: f"{x['rss']['peak_rss_mb']:.0f} MB ({x['rss']['events_per_s']:,.0f})"), "< 200 MB"),
    ]
    one, three = r["replicas"][1], r["replicas"][3]
    lines = ["| measure | SQLite | PostgreSQL | target |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    lines += [
        "",
        "| 30k backlog, 600 people, PostgreSQL | share of the ceiling | events/s | busiest second (requests) | 429s |",
        "|---|---:|---:|---:|---:|",
        f"| 1 replica | {one['share']:.0%} | {one['events_per_s']:,.0f} | {one['busiest_second']} | {one['refused_429']} |",
        f"| 3 replicas | {three['share']:.0%} | {three['events_per_s']:,.0f} | {three['busiest_second']} | "
        f"{three['refused_429']} |",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    path = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    page = path.read_text()
    head, _, rest = page.partition(MARK_START)
    _, _, tail = rest.partition(MARK_END)
    path.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}")


async def main() -> int:
    quick, save = "--quick" in sys.argv, "--write" in sys.argv
    results = await measure(quick)
    print(json.dumps(results, indent=2))
    text = (f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, Python "
            f"{platform.python_version()}, by `make bench` (`python -m bench.run --write`"
            f"{' --quick' if quick else ''}).\n\n{table(results)}")
    print(text)
    if save:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
