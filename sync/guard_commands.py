"""Commands of SPEC section 15 that run outside ``serve``: the webhook drift check of ``check-config``."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from sync import webhook_drift
from sync.config import Config
from sync.errors import RetryableUpstream
from sync.metrics import Metrics


async def check_webhook(config: Config) -> int:
    """Print whether Iterable's system webhook points at ``server.public_url`` as ``[inbound]`` expects;
    0 when it does, 1 when it drifted or Iterable could not be asked."""
    from sync.daemon import iterable_client

    async with aiohttp.ClientSession() as session:
        try:
            report = await webhook_drift.check(iterable_client(config, session, Metrics()), config, datetime.now(UTC))
        except RetryableUpstream as exc:
            print(f"webhook: cannot read Iterable's webhooks ({exc}); the drift check did not run")
            return 1
    where = f"webhook {report.webhook_id}" if report.webhook_id is not None else "webhook"
    print(f"{where}: {'OK' if report.ok else 'DRIFTED'}: Iterable's system webhook for {report.expected}")
    for problem in report.problems:
        print(f"  - {problem}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0 if report.ok else 1
