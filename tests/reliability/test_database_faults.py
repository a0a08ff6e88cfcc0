"""Database faults: ingest answers 503 (never 200) while the ledger cannot commit, and recovers
without an operator. SQLite locked past the busy timeout and a full disk (a read-only remount is refused
by the kernel while the ledger file is open for writing, so the full disk stands for both); the
PostgreSQL cluster restarted under load."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon, running
from sync.model import Direction
from sync.sandbox import FakeIterable, FakeSegment
from tests.processes import free_port
from tests.reliability.conftest import BASIC, Load, audit, daemon_config, known_users
from tests.support import make_config, wait_for


async def post_track(daemon: Daemon, message_id: str) -> int:
    body = {"userId": "k1", "event": "Fault", "messageId": message_id}
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{daemon.address[1]}/v1/track", json=body, headers=BASIC) as response:
        return response.status


@contextlib.asynccontextmanager
async def sqlite_daemon(path: Path, iterable: tuple[FakeIterable, str],
                        segment: tuple[FakeSegment, str]) -> AsyncIterator[Daemon]:
    config = make_config(ledger_url=f"sqlite:///{path}", iterable_url=iterable[1], segment_url=segment[1])
    known_users(iterable[0])
    async with running(config) as daemon:
        for worker in daemon.workers:
            worker.idle_seconds, worker.retry_base = 0.05, 0.05
        yield daemon


async def acknowledged_are_recorded(daemon: Daemon, statuses: dict[str, int]) -> None:
    for key, status in statuses.items():
        row = await daemon.ledger.get(Direction.OUTBOUND, key)
        assert (row is not None) if status == 200 else True, f"{key} was acknowledged but is not in the ledger"


async def test_sqlite_locked_past_the_busy_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    fake_iterable: Any, fake_segment: Any) -> None:
    monkeypatch.setattr("sync.ledger.base.SQLITE_BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "ledger.db"
    async with sqlite_daemon(path, fake_iterable, fake_segment) as daemon:
        assert await post_track(daemon, "before") == 200
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            statuses = {f"locked-{n}": await post_track(daemon, f"locked-{n}") for n in range(3)}
            assert set(statuses.values()) == {503}
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert await post_track(daemon, "after") == 200
        await wait_for(lambda: {"before", "after"} <= set(fake_iterable[0].events))
        await acknowledged_are_recorded(daemon, statuses)


@contextlib.contextmanager
def small_disk(tmp_path: Path, megabytes: int = 3) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def _accepts(daemon: Daemon, key: str) -> bool:
    return await post_track(daemon, key) == 200


async def test_full_disk(tmp_path: Path, fake_iterable: Any, fake_segment: Any) -> None:
    with small_disk(tmp_path, megabytes=4) as disk:
        async with sqlite_daemon(disk / "ledger.db", fake_iterable, fake_segment) as daemon:
            assert await post_track(daemon, "before") == 200
            filler = disk / "filler"
            with filler.open("wb") as handle, contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            statuses: dict[str, int] = {}
            for n in range(200):
                statuses[f"full-{n}"] = await post_track(daemon, f"full-{n}")
                if statuses[f"full-{n}"] == 503:
                    break
            assert 503 in statuses.values() and set(statuses.values()) <= {200, 503}
            filler.unlink()
            await wait_for(lambda: _accepts(daemon, "after"), within=10)
            await acknowledged_are_recorded(daemon, statuses)
            acknowledged = {k for k, v in statuses.items() if v == 200} | {"before", "after"}
            await wait_for(lambda: acknowledged <= set(fake_iterable[0].events))


def restart_postgresql() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").exists() else []
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("no local PostgreSQL cluster to restart")
    for version in versions:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
                       check=True, capture_output=True, timeout=60)


@pytest.mark.serial  # it restarts the PostgreSQL server every other test shares
async def test_postgresql_restart_under_load(spawn: Any, pg_url: str, fake_iterable: tuple[FakeIterable, str],
                                             fake_segment: tuple[FakeSegment, str]) -> None:
    from tests.conftest import _reset_pg

    await _reset_pg(pg_url)
    iterable, iterable_url = fake_iterable
    segment, segment_url = fake_segment
    known_users(iterable)
    iterable.enforce_rate_limits = False
    port = free_port()
    serve = spawn(daemon_config(port, pg_url, iterable_url, segment_url), port=port)
    await serve.ready()
    load = Load(serve.url)
    traffic = asyncio.create_task(load.run(pause=0.02))
    await wait_for(lambda: load.statuses[200] >= 20)  # the load is under way
    before = load.attempts
    await asyncio.to_thread(restart_postgresql)
    recovered = load.statuses[200]
    await wait_for(lambda: load.statuses[200] > recovered, within=30)  # and is acknowledged again after it
    load.stop()
    await traffic
    assert load.attempts > before
    assert load.statuses[503] > 0 and set(load.statuses) <= {200, 503}  # refused while down, never a 500
    await wait_for(lambda: audit(load, iterable, segment)["lost_outbound"] == 0
                   and audit(load, iterable, segment)["lost_inbound"] == 0, within=60)
    result = audit(load, iterable, segment)
    assert result["phantom"] == 0 and result["acknowledged_outbound"] > 50
    assert await _ready(serve.url)
    assert await serve.stop() == 0


async def _ready(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return response.status == 200
