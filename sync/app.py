"""The wiring: one function opens every resource, runs the service and closes them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sync import jobs as scheduling
from sync.config import Config, mapping_digest
from sync.engine.intake import Intake, outbound_options, people_rules
from sync.engine.throttle import Throttle
from sync.engine.worker import Sink, Worker
from sync.errors import CannotListen, LedgerLocked, SyncError
from sync.guards import Guards
from sync.http import console
from sync.http.connections import LimitedSite, connection_limit
from sync.http.console import replay as console_replay
from sync.http.ingress import Health, create_app
from sync.inbound.export import ExportPuller
from sync.iterable.client import IterableClient
from sync.iterable.learning import LearningClient
from sync.iterable.sink import IterableSink
from sync.jobs import Jobs
from sync.ledger import migrate
from sync.ledger.pacing import SharedPacing
from sync.ledger.store import Ledger, create_engine
from sync.ledger.timeouts import DatabaseTimeouts
from sync.metrics import Metrics
from sync.model import Direction
from sync.replay import Replayer
from sync.segment.sink import SegmentSink

log = logging.getLogger("sync.app")

GRACE_SECONDS = 20.0
FIRST_RUN_SECONDS = 5  # the guards' first reads of Iterable, this long after start (as the other jobs)
MAPPING_CURSOR = "mapping:digest"


def now() -> datetime:
    return datetime.now(UTC)


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite URL (None for PostgreSQL or an in-memory database)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def sqlite_owner(url: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the SQLite file itself while serving: a second ``serve`` on that file exits 1,
    however its URL names it (a symlink, a relative path, a hard link: the lock belongs to the file, not the name).

    ``flock`` and SQLite's own POSIX (``fcntl``) locks are independent on Linux, and this descriptor stays open
    until every SQLite connection is closed (closing a descriptor would drop this process's POSIX locks)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes] = open(path, "ab")  # noqa: SIM115 - held while serving; an empty file is an empty database
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LedgerLocked(f"another `serve` process already uses the SQLite ledger {path.resolve()}; "
                           "SQLite is single-process (use PostgreSQL for replicas)") from None
    try:
        yield
    finally:
        handle.close()


@dataclass(slots=True, kw_only=True)
class Daemon:
    """The running service's parts, for the acceptance tests and the shutdown path."""

    config: Config
    ledger: Ledger
    metrics: Metrics
    workers: list[Worker]
    health: Health
    app: web.Application
    jobs: Jobs
    digest: str = ""  # the mapping digest, computed once in build()
    guards: Guards | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    address: tuple[str, int] = ("", 0)

    def paused(self) -> dict[str, str]:
        """Why each paused direction is paused: an operator's reason, the upstream's refusal, or both (an
        operator may pause a direction the credentials already paused: neither hides the other)."""
        reasons = {w.direction.value: [r for r in (w.operator_paused, w.paused) if r] for w in self.workers}
        return {direction: "; ".join(found) for direction, found in reasons.items() if found}


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def iterable_client(config: Config, session: aiohttp.ClientSession, metrics: Metrics,
                    ledger: Ledger | None = None) -> IterableClient:
    """The Iterable client; on a PostgreSQL ledger its rate limits hold for all replicas together."""
    shared = SharedPacing(ledger.engine).take if ledger is not None and ledger.is_postgres else None
    return LearningClient(session, base_url=config.iterable.api_url, api_key=config.iterable.api_key,
                          timeout=config.iterable.timeout_seconds,
                          throttle=Throttle(config.iterable.rate_limits, shared=shared), metrics=metrics)


def build(config: Config, ledger: Ledger, session: aiohttp.ClientSession, metrics: Metrics) -> Daemon:
    owner = owner_name()
    client = iterable_client(config, session, metrics, ledger)
    options, digest = outbound_options(config), mapping_digest(config)  # built once, passed to what needs them
    workers: list[Worker] = []

    def worker(sink: Sink) -> Worker:
        # one owner per worker: a worker that stops releases only its own leases, never its sibling's
        return Worker(ledger, sink, metrics, owner=f"{owner}:{sink.direction.value}",
                      max_retry_hours=config.delivery.max_retry_hours,
                      lease_seconds=config.delivery.lease_seconds)

    if config.outbound.enabled:
        workers.append(worker(IterableSink(client, settle_seconds=config.iterable.queue_settle_seconds)))
    if config.inbound.enabled:
        workers.append(worker(SegmentSink(write_key=config.segment.write_key, host=config.segment.host,
                                          metrics=metrics)))
    by_direction = {w.direction: w for w in workers}

    def notify(direction: Direction) -> None:
        if direction in by_direction:
            by_direction[direction].notify()

    intake = Intake(ledger, metrics, notify=notify, options=options, digest=digest,
                    hold_hours=config.outbound.hold_anonymous_hours, **people_rules(config))
    puller = ExportPuller(client, intake, ledger, event_names=config.inbound.event_names,
                          mapping=config.inbound.mapping, digest=digest)
    jobs = Jobs(ledger, metrics, config, puller if config.reconcile.enabled else None)
    migrate.head_revision()  # read the scripts once, here: /readyz then costs one small query
    guards = Guards(client, config, metrics)
    if guards.guarding_types and isinstance(client, LearningClient):
        client.watch(guards.types, guards.refresh_soon)
        intake.guard = guards.types
    health = Health(check=lambda: migrate.ensure_current(ledger.engine), detail=guards.detail)
    app = create_app(config, intake, metrics, health, options=options, digest=digest)
    if config.console.enabled:
        console.install(app, config, ledger, workers, digest, metrics=metrics)
        console_replay.install(app, Replayer(ledger, console_replay.sinks_for(workers),
                                             retention_days=config.ledger.retention_days))
    daemon = Daemon(config=config, ledger=ledger, metrics=metrics, workers=workers, health=health, app=app,
                    jobs=jobs, digest=digest, guards=guards)
    health.paused = daemon.paused
    return daemon


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    """Open everything, serve HTTP and run the workers; on exit drain, then close in reverse order."""
    async with contextlib.AsyncExitStack() as resources:
        resources.enter_context(sqlite_owner(config.ledger.url))
        engine = create_engine(config.ledger.url, DatabaseTimeouts.of(config.ledger))
        resources.push_async_callback(engine.dispose)
        await migrate.upgrade(engine, config)
        session = await resources.enter_async_context(aiohttp.ClientSession())
        daemon = build(config, Ledger(engine), session, Metrics(event_names=config.delivery.metrics_event_names))
        await _announce_mapping(daemon)
        resources.callback(_close_sinks, daemon)
        runner = web.AppRunner(daemon.app, access_log=None, handle_signals=False,
                               keepalive_timeout=config.server.header_timeout_seconds)
        await runner.setup()
        resources.push_async_callback(runner.cleanup)
        try:
            await LimitedSite(runner, config.server.host, config.server.port,
                              limit=connection_limit(config.server.max_connections)).start()
        except OSError as exc:  # the port is taken, or the host is not an address of this machine
            raise CannotListen(f"cannot listen on {config.server.host}:{config.server.port}: "
                               f"{exc.strerror or exc} (server.host, server.port)") from None
        daemon.address = runner.addresses[0]
        log.info("serving", extra={"address": f"{config.server.host}:{daemon.address[1]}",
                                   "directions": [w.direction.value for w in daemon.workers],
                                   "iterable": config.iterable.api_url, "segment": config.segment.host,
                                   "console": "/console" if config.console.enabled else "off"})
        daemon.tasks = [asyncio.create_task(w.run(), name=f"deliver-{w.direction.value}") for w in daemon.workers]
        scheduler = scheduling.start(daemon.jobs)
        if daemon.guards is not None:
            daemon.guards.schedule(scheduler, now() + timedelta(seconds=FIRST_RUN_SECONDS))
        resources.push_async_callback(_stop, daemon, scheduler)
        yield daemon


async def _announce_mapping(daemon: Daemon) -> None:
    """Log which mapping is in force (and the one before), and export it: replicas that differ show."""
    digest = daemon.digest
    before = await daemon.ledger.cursor(MAPPING_CURSOR)
    if before != digest:
        await daemon.ledger.set_cursor(MAPPING_CURSOR, digest, now())
    log.info(f"mapping digest {digest[:12]} (was {(before or 'none')[:12]})",
             extra={"digest": digest, "previous": before})
    daemon.metrics.mapping.labels(digest=digest).set(1)


async def _stop(daemon: Daemon, scheduler: AsyncIOScheduler) -> None:
    scheduler.shutdown(wait=False)
    daemon.health.draining = True
    log.info("stopping: draining in-flight deliveries")
    await _drain(daemon)


def _close_sinks(daemon: Daemon) -> None:
    for worker in daemon.workers:
        getattr(worker.sink, "close", lambda: None)()


async def serve(config: Config) -> int:
    """Run until SIGTERM, SIGINT or SIGHUP (each drains); return the exit code (1 when a background task died)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _hangup, stop)
    async with running(config) as daemon:
        failed = await _supervise(daemon.tasks, stop)
    log.info("stopped", extra={"exit_code": 1 if failed else 0})
    return 1 if failed else 0


def _hangup(stop: asyncio.Event) -> None:
    """SIGHUP (a closed terminal, or ``systemctl reload`` without an ExecReload) drains and stops as SIGTERM
    does: nothing is reloaded in place, so a new config takes effect when the service manager restarts us."""
    log.warning("SIGHUP: stopping as for SIGTERM (nothing is reloaded in place; restart to apply a new config)")
    stop.set()


async def _supervise(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> bool:
    """Wait for a stop signal; a background task that dies stops the daemon (exit 1)."""
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done:
        if task is not stopper:
            exc = task.exception() if not task.cancelled() else None
            log.critical("background task died; stopping", extra={"task": task.get_name(), "error": repr(exc)})
            return True
    return False


async def _drain(daemon: Daemon) -> None:
    """Let workers finish their current round (bounded), then give back any lease still held."""
    for worker in daemon.workers:
        worker.stop()
    if not daemon.tasks:
        return
    _, pending = await asyncio.wait(daemon.tasks, timeout=GRACE_SECONDS)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
        for worker in daemon.workers:
            with contextlib.suppress(SyncError):
                await daemon.ledger.release_owner(worker.owner, now())
