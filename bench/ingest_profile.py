"""Where an ingested event's time goes (issue 20), in-process and without HTTP: the same 100-event batches as
``bench.ingest`` from 4 concurrent senders through the daemon's own intake (``outbound_rows`` then
``Intake.record``, group commit included) into a migrated ledger.

Reports per event: the event-loop thread's CPU split into mapping and recording, the CPU of the other threads
(aiosqlite's writer thread; asyncpg has none), wall time, and the group-commit sizes seen. Run:
``python -m bench.ingest_profile [sqlite|postgresql] [events]``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench.common import database
from bench.ingest import track
from sync.config import mapping_digest
from sync.engine.intake import Intake, outbound_options, outbound_rows
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.metrics import Metrics
from sync.model import NewEvent
from sync.wire import strict_loads
from tests.support import make_config


class Stopwatch:
    """Event-loop thread CPU spent in named stages (``time.thread_time``: this thread only)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def add(self, stage: str, since: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.thread_time() - since


async def profile(kind: str, count: int, clients: int = 4) -> dict[str, Any]:
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        config = make_config(ledger_url=url)
        options, digest = outbound_options(config), mapping_digest(config)
        ledger = Ledger(engine)
        sizes: list[int] = []
        real = ledger.record

        async def counted(rows: Sequence[NewEvent], now: datetime) -> set[str]:
            sizes.append(len(rows))
            return await real(rows, now)

        ledger.record = counted  # type: ignore[method-assign]
        intake = Intake(ledger, Metrics(), options=options, digest=digest, hold_hours=24.0)
        bodies = iter([json.dumps({"batch": [track(n, kind) for n in range(at, at + 100)]}).encode()
                       for at in range(0, count, 100)])
        watch = Stopwatch()

        async def sender() -> None:
            for body in bodies:
                started = time.thread_time()
                events = strict_loads(body)["batch"]
                watch.add("parse", started)
                started = time.thread_time()
                rows, _ = outbound_rows(events, options, digest)
                watch.add("map", started)
                started = time.thread_time()
                await intake.record(rows)  # (its CPU includes other senders' steps run meanwhile: subtracted)
                watch.add("record+", started)

        process, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        wall, loop_cpu = time.perf_counter() - wall, time.thread_time() - loop_cpu
        others = time.process_time() - process - loop_cpu
        await engine.dispose()
    per = 1e6 / count
    parse, mapping = watch.cpu["parse"], watch.cpu["map"]
    return {"kind": kind, "events_per_s": count / wall, "loop_cpu_us": loop_cpu * per, "parse_us": parse * per,
            "map_us": mapping * per, "record_on_loop_us": (loop_cpu - parse - mapping) * per,
            "other_threads_cpu_us": others * per, "commits": len(sizes),
            "commit_rows_mean": statistics.mean(sizes), "commit_rows_max": max(sizes)}


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    result = asyncio.run(profile(kind, count))
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
