"""The section-15 guards inside ``serve``: Iterable's field types and the webhook drift check, each read
hourly (and the field types soon after Iterable refuses a value for its type)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sync.config import Config
from sync.inbound import drift as webhook_drift
from sync.inbound.drift import WebhookReport
from sync.iterable import learning as type_learning
from sync.iterable.client import IterableClient
from sync.iterable.field_types import FieldTypes
from sync.jobs import guarded
from sync.metrics import Metrics

log = logging.getLogger("sync.guards")

HOURLY = 3600


class Guards:
    """What the guards know (field types, the last webhook report) and the jobs that keep it fresh."""

    def __init__(self, client: IterableClient, config: Config, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client, self.config, self.metrics, self.clock = client, config, metrics, clock
        self.types = FieldTypes()
        self.webhook: WebhookReport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def guarding_types(self) -> bool:
        return self.config.outbound.enabled and self.config.outbound.type_guard == "refuse"

    @property
    def checking_webhook(self) -> bool:
        return self.config.inbound.enabled and bool(self.config.server.public_url)

    async def refresh_types(self) -> int:
        """Read ``GET /api/users/getFields``; returns how many user fields Iterable listed."""
        count = await type_learning.refresh(self.client, self.types, self.clock())
        log.info("read Iterable's field types", extra={"user_fields": count})
        return count

    def refresh_soon(self) -> None:
        """After a refusal for a value's type: read getFields now, in the background."""
        async def run() -> None:
            await guarded("refresh-field-types", self.refresh_types)()

        task = asyncio.create_task(run(), name="refresh-field-types")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check_webhook(self) -> WebhookReport:
        """Read ``GET /api/webhooks`` and judge it; the report shows on ``/readyz`` and the gauge."""
        report = await webhook_drift.check(self.client, self.config, self.clock())
        self.webhook = report
        self.metrics.webhook_ok.set(1 if report.ok else 0)
        if not report.ok:
            log.warning("Iterable's system webhook drifted: inbound events may not arrive",
                        extra={"problems": list(report.problems), "webhook_id": report.webhook_id})
        return report

    def detail(self) -> dict[str, object]:
        """``/readyz`` detail: the last webhook report, when the check is on."""
        if not self.checking_webhook:
            return {}
        return {"webhook": self.webhook.detail() if self.webhook else {"ok": None, "checked_at": None}}

    def schedule(self, scheduler: AsyncIOScheduler, first: datetime) -> None:
        for name, job, on in (("refresh-field-types", self.refresh_types, self.guarding_types),
                              ("check-webhook", self.check_webhook, self.checking_webhook)):
            if on:
                scheduler.add_job(guarded(name, job), "interval", seconds=HOURLY, id=name, name=name,
                                  max_instances=1, coalesce=True, misfire_grace_time=HOURLY, next_run_time=first)
