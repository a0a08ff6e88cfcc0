"""Maintenance jobs on APScheduler (3.x, AsyncIOScheduler) inside ``serve``.

Each job is guarded: a failure is logged and the job simply runs again at its next time. Jobs
that must not run twice at once across replicas (retention, reconciliation) take a PostgreSQL
advisory lock through ``Ledger.singleton``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sync.config import Config
from sync.inbound.export import ExportPuller
from sync.ledger.store import Ledger
from sync.metrics import Metrics
from sync.outbound import anonymous

HELD_EXPIRED = "outbound.hold_anonymous_hours"  # the skipped metric's reason for held events that expired
log = logging.getLogger("sync.jobs")

REAP_SECONDS = 30
GAUGE_SECONDS = 15
RETENTION_MINUTES = 60
HELD_MINUTES = 5


class Jobs:
    def __init__(self, ledger: Ledger, metrics: Metrics, config: Config, puller: ExportPuller | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.ledger, self.metrics, self.config, self.puller, self.clock = ledger, metrics, config, puller, clock
        self._deletions = 0  # deletions pending at the last gauge refresh

    async def reap_leases(self) -> int:
        """Rows whose lease ran out (their process died) go back to the pool."""
        count = await self.ledger.reap_expired(self.clock())
        if count:
            log.warning("returned expired leases to the pool", extra={"rows": count})
        return count

    async def refresh_gauges(self) -> None:
        """The pending gauges, read here on a timer so a scrape never reads the ledger."""
        self.metrics.observe_ledger(await self.ledger.pending(), self.clock())
        deletions = await self.ledger.deletions_pending()
        if deletions and deletions != self._deletions:  # an alert, once per change: a GDPR request is waiting
            log.warning("deletion requests waiting for Iterable", extra={"rows": deletions})
        self._deletions = deletions
        self.metrics.deletions_pending.set(deletions)

    async def expire_held(self) -> int:
        """Anonymous events whose visitor was not identified within ``outbound.hold_anonymous_hours`` are skipped;
        with holding turned off (0), rows held before expire after ``anonymous.EXPIRE_HOURS_WHEN_OFF``."""
        hours = self.config.outbound.hold_anonymous_hours or anonymous.EXPIRE_HOURS_WHEN_OFF
        count = await self.ledger.expire_held(self.clock() - timedelta(hours=hours), self.clock())
        if count:
            log.info("anonymous events never identified: skipped", extra={"rows": count})
            # counted as intake counts its skips (by the deciding config key): dashboards match `ledger stats`
            self.metrics.skipped.labels(direction="outbound", reason=HELD_EXPIRED).inc(count)
        return count

    async def retention(self) -> int | None:
        """Prune terminal rows older than ``ledger.retention_days``, in chunks (None: another process ran it)."""
        async with self.ledger.singleton("retention") as mine:
            if not mine:
                return None
            cutoff = self.clock() - timedelta(days=self.config.ledger.retention_days)
            count = await self.ledger.purge(cutoff)
        if count:
            log.info("pruned terminal rows", extra={"rows": count, "older_than": cutoff.isoformat()})
        return count

    async def reconcile(self) -> int | None:
        """Pull the recent export window; returns new rows (None: another process holds the job)."""
        if self.puller is None:
            return 0
        settings = self.config.reconcile
        async with self.ledger.singleton("reconcile") as mine:
            if not mine:
                return None
            until = self.clock()
            since = until - timedelta(minutes=settings.lookback_minutes)
            progress = await self.puller.run(settings.event_types, since, until,
                                             slice_hours=settings.lookback_minutes / 60, resume=False)
        log.info("reconciled from the export API", extra={"fetched": progress.fetched, "new": progress.new,
                                                          "duplicates": progress.duplicates})
        return progress.new


def guarded(name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:  # the daemon is stopping (raised on, the scheduler logs a traceback)
            log.info("scheduled job stopped with the daemon; it runs again after the next start", extra={"job": name})
        except Exception as exc:  # a job failure must never stop the daemon; the next run retries
            log.error("scheduled job failed; it runs again at its next time", extra={"job": name,
                                                                                   "error": repr(exc)[:500]})

    run.__name__ = name
    return run


def start(jobs: Jobs) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    soon = datetime.now(UTC) + timedelta(seconds=5)

    def every(name: str, job: Callable[[], Awaitable[object]], seconds: float) -> None:
        scheduler.add_job(guarded(name, job), "interval", seconds=seconds, id=name, name=name, max_instances=1,
                          coalesce=True, misfire_grace_time=int(seconds), next_run_time=soon)

    every("reap-leases", jobs.reap_leases, REAP_SECONDS)
    every("refresh-gauges", jobs.refresh_gauges, GAUGE_SECONDS)
    every("retention", jobs.retention, RETENTION_MINUTES * 60)
    every("expire-held", jobs.expire_held, HELD_MINUTES * 60)
    if jobs.config.reconcile.enabled:
        every("reconcile", jobs.reconcile, jobs.config.reconcile.interval_minutes * 60)
    scheduler.start()
    return scheduler
