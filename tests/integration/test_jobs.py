"""Scheduled maintenance jobs on both databases: reaper, retention, gauges, reconciliation, singletons."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from sync.app import iterable_client, running
from sync.config import Config
from sync.engine.intake import Intake
from sync.inbound.export import ExportPuller
from sync.jobs import Jobs, guarded
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.metrics import Metrics
from sync.model import Claim, Direction, NewEvent, Settlement, Status
from sync.sandbox import FakeIterable, FakeSegment
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.support import lapse_leases, make_config, wait_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def rows(n: int, prefix: str = "k") -> list[NewEvent]:
    return [NewEvent(direction=Direction.OUTBOUND, key=f"{prefix}{i}", kind="track", payload={}, user_key=f"u{i}")
            for i in range(n)]


def jobs_for(ledger: Ledger, config: Config, now: datetime, puller: ExportPuller | None = None,
             metrics: Metrics | None = None) -> Jobs:
    return Jobs(ledger, metrics or Metrics(), config, puller, clock=lambda: now)


async def test_reaper_returns_expired_leases(ledger: Ledger, ledger_url: str) -> None:
    await ledger.record(rows(3), T0)
    died = Ledger(create_engine(ledger_url))
    await died.claim(Claim(direction=Direction.OUTBOUND, owner="dead-process", limit=2, lease_seconds=10), T0)
    await died.close()
    config = make_config(ledger_url=ledger_url)
    assert await jobs_for(ledger, config, T0 + timedelta(seconds=5)).reap_leases() == 0
    await lapse_leases(ledger, 11)  # the lease ends by the database's clock
    assert await jobs_for(ledger, config, T0 + timedelta(seconds=11)).reap_leases() == 2
    leased = [r for r in await ledger.rows(status=Status.PENDING) if r.lease_owner]
    assert leased == []


async def test_retention_prunes_old_terminal_rows_in_chunks_and_keeps_the_rest(ledger: Ledger,
                                                                               ledger_url: str) -> None:
    old = T0 - timedelta(days=10)
    await ledger.record(rows(2500, "old"), old)
    claimed = await ledger.claim(Claim(direction=Direction.OUTBOUND, owner="w", limit=2400, lease_seconds=60), old)
    await ledger.settle(Settlement(delivered=tuple(r.id for r in claimed)), old, owner="w")
    await ledger.record(rows(5, "new"), T0)
    config = make_config(ledger_url=ledger_url)
    assert await jobs_for(ledger, config, T0).retention() == 2400
    counts = (await ledger.stats()).counts
    assert counts == {("outbound", "pending"): 105}  # 100 old pending rows stay: not terminal


async def test_retention_is_a_singleton_on_postgresql(pg_url: str) -> None:
    """Two processes' ledgers on one database: only one may run the job at a time."""
    from tests.conftest import _reset_pg

    await _reset_pg(pg_url)
    first, second = Ledger(create_engine(pg_url)), Ledger(create_engine(pg_url))
    try:
        await migrate.upgrade(first.engine)
        config = make_config(ledger_url=pg_url)
        async with first.singleton("retention") as mine:
            assert mine
            assert await jobs_for(second, config, T0).retention() is None  # another holder: this run skips
        assert await jobs_for(second, config, T0).retention() == 0
    finally:
        await first.close()
        await second.close()


async def test_gauges_follow_the_ledger(ledger: Ledger, ledger_url: str) -> None:
    await ledger.record(rows(4), T0)
    metrics = Metrics()
    await jobs_for(ledger, make_config(ledger_url=ledger_url), T0 + timedelta(seconds=90),
                   metrics=metrics).refresh_gauges()
    text = metrics.render().decode()
    assert 'sync_ledger_pending{direction="outbound"} 4.0' in text
    assert 'sync_oldest_pending_seconds{direction="outbound"} 90.0' in text


async def test_a_failing_job_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("database went away")

    with caplog.at_level(logging.ERROR, logger="sync.jobs"):
        await guarded("retention", broken)()
    assert "scheduled job failed" in caplog.text


async def test_reconcile_pulls_the_recent_window_and_dedupes(
        ledger: Ledger, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, url = fake_iterable
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = (now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S +00:00")
    fake.export_records["emailOpen"] = [{"email": f"e{n}@example.com", "createdAt": stamp, "messageId": f"m{n}",
                                         "campaignId": 1} for n in range(3)]
    config = make_config(ledger_url=ledger_url, iterable_url=url,
                         reconcile={"enabled": True, "event_types": ["emailOpen", "pushOpen"],
                                    "lookback_minutes": 30},
                         iterable={"rate_limits": {"export/data.json": 100}})
    async with aiohttp.ClientSession() as session:
        metrics = Metrics()
        puller = ExportPuller(iterable_client(config, session, metrics), Intake(ledger, metrics), ledger,
                              event_names="segment")
        jobs = jobs_for(ledger, config, now, puller)
        assert await jobs.reconcile() == 3
        assert await jobs.reconcile() == 0  # overlapping windows: already recorded
    assert (await ledger.stats()).counts == {("inbound", "pending"): 3}


async def test_the_serving_daemon_runs_reconciliation_on_its_scheduler(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str],
        fake_segment: tuple[FakeSegment, str]) -> None:
    from tests.conftest import _reset_pg

    if ledger_url.startswith("postgresql"):
        await _reset_pg(ledger_url)
    fake, _ = fake_iterable
    webhook = ITERABLE_WEBHOOKS[5]  # pushOpen
    stamp = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S +00:00")
    fake.export_records["pushOpen"] = [{**webhook["dataFields"], "createdAt": stamp, "email": "late@example.com"}]
    config = replace(stack_config, reconcile=replace(stack_config.reconcile, enabled=True,
                                                     event_types=("pushOpen",)))
    async with running(config) as daemon:
        for worker in daemon.workers:
            worker.idle_seconds = 0.05
        await wait_for(lambda: len(fake_segment[0].messages) == 1, within=20)
    message: dict[str, Any] = fake_segment[0].messages[0]
    assert message["event"] == "Push Opened" and message["anonymousId"] == "late@example.com"


async def test_a_backfill_counts_records_it_could_not_read_as_invalid_not_new(ledger: Ledger) -> None:
    """A fresh-eyes review: a record whose time cannot be read is kept as a rejected row (with its reason),
    and the progress counted it as new."""
    import json

    class Export(ExportPuller):
        async def _fetch(self, kind: str, start: datetime, end: datetime) -> str:
            records = [{"email": "a@example.com", "createdAt": "2016-12-02 10:00:00 +00:00", "messageId": "m1"},
                       {"email": "b@example.com", "createdAt": "yesterday", "messageId": "m2"}, "not an object"]
            return "\n".join(json.dumps(r) for r in records) + "\nnot json\n"

    metrics = Metrics()
    puller = Export(None, Intake(ledger, metrics), ledger, event_names="segment")  # type: ignore[arg-type]
    got = await puller.pull("emailOpen", T0, T0 + timedelta(hours=1))
    assert (got.fetched, got.new, got.duplicates, got.invalid) == (4, 1, 0, 3)
    again = await puller.pull("emailOpen", T0, T0 + timedelta(hours=1))
    assert (again.new, again.duplicates, again.invalid) == (0, 2, 2)  # the rejected row is recorded once
    assert [r.status for r in await ledger.rows(direction=Direction.INBOUND)] == [Status.PENDING, Status.REJECTED]
