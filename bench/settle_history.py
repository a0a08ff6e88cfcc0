"""What the attempt history costs the hot path (issue 23): settling 2,000 delivered rows with and without their
history lines and counters, alternated A B A B in one run on the same ledger. Not a test.

    python -m bench.settle_history [--rounds 6] [--kinds sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

from bench.backlog import postgres_backlog, sqlite_backlog
from bench.common import database
from bench.ledger_ops import CLAIM_LIMIT
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.model import Attempt, Claim, Direction, Settlement


async def measure(kind: str, rounds: int) -> dict[str, float]:
    """Median milliseconds of one settle of ``CLAIM_LIMIT`` delivered rows, with and without history."""
    times: dict[str, list[float]] = {"without": [], "with": []}
    async with database(kind) as url:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        if kind == "sqlite":
            sqlite_backlog(url.split(":///", 1)[1], CLAIM_LIMIT * rounds * 2, users=10_000)
        else:
            await postgres_backlog(url, CLAIM_LIMIT * rounds * 2, users=10_000)
        ledger = Ledger(engine)
        now = datetime.now(UTC)
        try:
            for n in range(rounds * 2):
                variant = "with" if n % 2 else "without"
                claim = Claim(direction=Direction.OUTBOUND, owner="bench", limit=CLAIM_LIMIT, lease_seconds=120)
                rows = await ledger.claim(claim, now)
                history = tuple(Attempt(row_id=r.id, direction=Direction.OUTBOUND, outcome="delivered",
                                        endpoint="events/trackBulk", http_status=200, name="Bench", latency=0.2,
                                        detail='{"failCount": 0, "successCount": 1000}') for r in rows)
                settlement = Settlement(delivered=tuple(r.id for r in rows),
                                        attempts=history if variant == "with" else ())
                started = time.perf_counter()
                await ledger.settle(settlement, now, owner="bench")
                times[variant].append((time.perf_counter() - started) * 1000)
        finally:
            await engine.dispose()
    return {k: statistics.median(v) for k, v in times.items()}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--kinds", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        found = await measure(kind, args.rounds)
        print(f"{kind}: settle {CLAIM_LIMIT} delivered rows: without history {found['without']:.1f} ms, with "
              f"{found['with']:.1f} ms (x{found['with'] / found['without']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
