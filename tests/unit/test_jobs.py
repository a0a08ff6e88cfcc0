"""Scheduled jobs at stop: a job the stopping daemon cancels ends quietly (a clean SIGTERM logged a 15-line
`CancelledError` traceback as an ERROR from the scheduler while reconciliation waited on Iterable)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sync.jobs import guarded


async def test_a_job_cancelled_at_stop_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def waits_on_iterable() -> None:
        started.set()
        await asyncio.sleep(3600)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(guarded("reconcile", waits_on_iterable), "date", run_date=datetime.now(UTC) + timedelta(seconds=0.01))
    caplog.set_level(logging.INFO)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    scheduler.shutdown(wait=False)
    running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in running:  # what asyncio.run does to the tasks left at the end
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("stopped with the daemon" in r.getMessage() for r in caplog.records)
