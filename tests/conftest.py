"""Fixtures: real SQLite and PostgreSQL ledgers, the fake upstreams on loopback, a running daemon."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sync.config import Config
from sync.daemon import Daemon, running
from sync.ledger import Ledger, migrate
from sync.ledger.store import create_engine
from sync.sandbox import FakeIterable, FakeSegment
from tests.processes import spawn, tcp_proxy  # noqa: F401 - fixtures
from tests.support import FAKE_QUEUE_DELAY, FAKE_VISIBILITY_LAG, ITERABLE_KEY, SEGMENT_KEY, make_config

# the realistic setting: a hybrid project, users visible only after a lag, bulk and single calls applied
# in two queues after independent random delays
STRICT = {"project_type": "hybrid", "visibility_lag": FAKE_VISIBILITY_LAG, "bulk_delay": FAKE_QUEUE_DELAY,
          "single_delay": FAKE_QUEUE_DELAY}

PG_ADMIN_URL = os.environ.get("SYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _blocking(coro: Any) -> None:
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    name = f"sync_test_{uuid.uuid4().hex[:10]}"
    try:
        _blocking(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI but not reachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    _blocking(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("pg_url")
    return url


async def _reset_pg(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    if ledger_url.startswith("postgresql"):
        await _reset_pg(ledger_url)
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    try:
        yield Ledger(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port; yield its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def fake_iterable() -> AsyncIterator[tuple[FakeIterable, str]]:
    fake = FakeIterable(ITERABLE_KEY, **STRICT)
    async with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
async def fake_segment() -> AsyncIterator[tuple[FakeSegment, str]]:
    fake = FakeSegment(SEGMENT_KEY)
    async with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
def stack_config(ledger_url: str, fake_iterable: Any, fake_segment: Any) -> Config:
    return make_config(ledger_url=ledger_url, iterable_url=fake_iterable[1], segment_url=fake_segment[1])


@contextlib.asynccontextmanager
async def started(config: Config, ledger_url: str) -> AsyncIterator[Daemon]:
    """The real daemon, in-process, with test-sized waits (polls, probes, backoff base)."""
    if ledger_url.startswith("postgresql"):
        await _reset_pg(ledger_url)
    async with running(config) as running_daemon:
        for worker in running_daemon.workers:
            worker.idle_seconds, worker.probe_seconds, worker._probe_delay = 0.05, 0.2, 0.2
            worker.retry_base = 0.05
        yield running_daemon


@pytest.fixture
async def daemon(stack_config: Config, ledger_url: str) -> AsyncIterator[Daemon]:
    """The real daemon, in-process, against the fakes; ``daemon.address`` is its HTTP port."""
    async with started(stack_config, ledger_url) as running_daemon:
        yield running_daemon
