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

from sync.app import Daemon, running
from sync.config import Config
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
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


# the slow suites first, so that under xdist their long tests do not start last and stretch the run
_FIRST = ("tests/reliability/", "tests/acceptance/", "tests/browser/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((n for n, prefix in enumerate(_FIRST) if path.startswith(prefix)), len(_FIRST))

    items.sort(key=rank)  # stable: the order inside each suite is kept


def pytest_configure(config: pytest.Config) -> None:
    """One id per run; xdist workers inherit it through the environment (the controller configures first)."""
    os.environ.setdefault("SYNC_TEST_RUN", uuid.uuid4().hex[:10])


def _template_name() -> str:
    return f"sync_tpl_{os.environ['SYNC_TEST_RUN']}"


def _pg(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


async def _build_template(name: str) -> None:
    """The template database: created and migrated once per run (the first worker builds it, under a lock)."""
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", name)
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return
            await conn.execute(f'CREATE DATABASE "{name}_building"')
            engine = create_engine(_pg(f"{name}_building"))
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()
            await conn.execute(f'ALTER DATABASE "{name}_building" RENAME TO "{name}"')
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", name)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """This worker's PostgreSQL database, copied from the run's migrated template (dropped at the end).

    Each test that asks for it (through ``ledger_url`` or ``_reset_pg``) starts from the template's state:
    the schema at head and no rows."""
    template = _template_name()
    name = f"sync_test_{uuid.uuid4().hex[:10]}"
    try:
        _blocking(_build_template(template))
        _blocking(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI but not reachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    yield _pg(name)
    _blocking(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without workers) drops the run's template database."""
    if getattr(session.config, "workerinput", None) is not None:
        return
    template = _template_name()
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        _blocking(_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("pg_url")
    _blocking(_reset_pg(url))
    return url


async def _empty_pg(url: str) -> None:
    """No schema at all: for the tests of the migrations themselves."""
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def _reset_pg(url: str) -> None:
    """Back to the template's state (schema at head, no rows): a TRUNCATE, not a migration, unless a test
    left the schema elsewhere. Connections a previous test left behind are ended first."""
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)
    try:
        version = await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if version:
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
        if version == migrate.head_revision():
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                      "AND tablename <> 'alembic_version'")
            truncate = "TRUNCATE " + ", ".join(f'"{t["tablename"]}"' for t in tables) + " RESTART IDENTITY"
            await conn.execute("SET lock_timeout = '2s'")
            try:
                await conn.execute(truncate)
            except asyncpg.LockNotAvailableError:  # a session a killed process left in a transaction
                await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                await conn.execute(truncate)
            return
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def opened(ledger_url: str) -> AsyncIterator[Ledger]:
    """A ledger on ``ledger_url`` (a SQLite file migrated here; PostgreSQL comes migrated from the template)."""
    engine = create_engine(ledger_url)
    if ledger_url.startswith("sqlite"):
        await migrate.upgrade(engine)
    try:
        yield Ledger(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    async with opened(ledger_url) as opened_ledger:
        yield opened_ledger


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
            worker.idle_seconds = 0.05
            worker.gate.probe_every(0.2)
            worker.retry_base = 0.05
        yield running_daemon


@pytest.fixture
async def daemon(stack_config: Config, ledger_url: str) -> AsyncIterator[Daemon]:
    """The real daemon, in-process, against the fakes; ``daemon.address`` is its HTTP port."""
    async with started(stack_config, ledger_url) as running_daemon:
        yield running_daemon
