"""Kill loop: the real daemon under steady load in both directions, SIGKILLed at random moments and
restarted; every acknowledged event must arrive upstream, and repeats only ever reuse the same id."""

# Real time on purpose: the kills land after seeded random pauses (0.2-1.2 s) under steady load, and the last
# daemon takes load for 0.5 s before it stops; what is tested is wherever a real SIGKILL falls.

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from sync.sandbox import FakeIterable, FakeSegment
from tests.processes import free_port
from tests.reliability.conftest import Load, audit, daemon_config, known_users
from tests.support import wait_for

KILLS = 10


@pytest.mark.timeout(300)  # 30-40 s alone; ten restarts compete with the rest of the suite for 2 cores
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_sigkill_loop_loses_nothing(backend: str, request: pytest.FixtureRequest, spawn: Any, tmp_path: Path,
                                          fake_iterable: tuple[FakeIterable, str],
                                          fake_segment: tuple[FakeSegment, str]) -> None:
    iterable, iterable_url = fake_iterable
    segment, segment_url = fake_segment
    known_users(iterable)
    iterable.enforce_rate_limits = False
    iterable.faults.latency = segment.faults.latency = 0.03  # keep deliveries in flight when the kill lands
    if backend == "sqlite":
        db_file = tmp_path / "ledger.db"
        ledger_url = f"sqlite:///{db_file}"
    else:
        from tests.conftest import _reset_pg

        ledger_url = request.getfixturevalue("pg_url")
        await _reset_pg(ledger_url)
    port = free_port()
    text = daemon_config(port, ledger_url, iterable_url, segment_url)
    rng = random.Random(20261128)
    serve = spawn(text, port=port)
    await serve.ready()
    load = Load(serve.url)
    traffic = asyncio.create_task(load.run())
    started = time.monotonic()
    integrity = []
    for kill in range(KILLS):
        await asyncio.sleep(rng.uniform(0.2, 1.2))
        serve.kill()
        if backend == "sqlite":
            integrity.append(_integrity(db_file))
        serve = spawn(text, port=port, name=f"restart-{kill}.toml")
        await serve.ready()
    await asyncio.sleep(0.5)
    load.stop()
    await traffic
    await wait_for(lambda: audit(load, iterable, segment)["lost_outbound"] == 0
                   and audit(load, iterable, segment)["lost_inbound"] == 0, within=60)
    assert await serve.stop() == 0
    result = audit(load, iterable, segment)
    result.update(kills=KILLS, seconds=round(time.monotonic() - started), requests=load.attempts,
                  refused_during_restarts=load.refused)
    print(f"\nkill loop ({backend}): {json.dumps(result)}")
    assert result["lost_outbound"] == result["lost_inbound"] == 0
    assert result["phantom"] == 0
    assert result["acknowledged_outbound"] > 200 and result["acknowledged_inbound"] > 20
    assert all(check == "ok" for check in integrity)


def _integrity(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()
