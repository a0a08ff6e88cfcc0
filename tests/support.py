"""Helpers shared by the test suites: configs, signing, waiting."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sync.config import Config, parse

WRITE_KEY = "test-write-key"
SHARED_SECRET = "test-shared-secret"
WEBHOOK_TOKEN = "test-webhook-token"
ITERABLE_KEY = "iterable-test-key"
SEGMENT_KEY = "segment-test-key"
# the fakes' queues apply within FAKE_QUEUE_DELAY; a person's calls stay in one queue for longer than that
FAKE_QUEUE_DELAY = 0.2
FAKE_VISIBILITY_LAG = 0.5
QUEUE_SETTLE = 0.5


def config_dict(*, ledger_url: str, iterable_url: str = "http://127.0.0.1:9", segment_url: str = "http://127.0.0.1:9",
                port: int = 0, **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port or 8787},
        "ledger": {"url": ledger_url},
        "iterable": {"api_key": ITERABLE_KEY, "base_url": iterable_url, "timeout_seconds": 5,
                     "queue_settle_seconds": QUEUE_SETTLE},
        "segment": {"write_key": SEGMENT_KEY, "host": segment_url},
        "outbound": {"write_keys": [WRITE_KEY], "shared_secrets": [SHARED_SECRET]},
        "inbound": {"auth_tokens": [WEBHOOK_TOKEN]},
        "reconcile": {"enabled": False},  # on by default; the tests that need it turn it on
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def daemon_config(port: int, ledger_url: str, iterable_url: str, segment_url: str, *, lease: float = 2.0,
                  timeout: float = 5.0, extra: str = "", reconcile: bool = False) -> str:
    """A daemon config file's text for the process tests (fakes on loopback, short leases)."""
    return f"""
[server]
port = {port}
[ledger]
url = "{ledger_url}"
[iterable]
api_key = "{ITERABLE_KEY}"
base_url = "{iterable_url}"
timeout_seconds = {timeout}
queue_settle_seconds = {QUEUE_SETTLE}
[segment]
write_key = "{SEGMENT_KEY}"
host = "{segment_url}"
[outbound]
write_keys = ["{WRITE_KEY}"]
[inbound]
auth_tokens = ["{WEBHOOK_TOKEN}"]
[delivery]
lease_seconds = {lease}
[reconcile]
enabled = {str(reconcile).lower()}
{extra}"""


def make_config(**kwargs: Any) -> Config:
    port = kwargs.pop("port", 0)
    config = parse(config_dict(port=port, **kwargs), {})
    if port == 0:  # let the OS pick: the parser insists on 1-65535
        from dataclasses import replace

        config = replace(config, server=replace(config.server, port=0))
    return config


def sign(raw: bytes, secret: str = SHARED_SECRET) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], within: float = 10.0,
                   interval: float = 0.05) -> None:
    """Poll until ``predicate`` holds; fail the test with a clear message when it never does."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def lapse_leases(ledger: Any, seconds: float) -> None:
    """Let ``seconds`` pass for every lease in the ledger, by the database's own terms (leases are judged by
    the database's clock, so a test cannot move them on by passing a later ``now``; the in-memory ledger's
    leases end as its rows say)."""
    import sqlalchemy as sa

    from sync.ledger.memory import MemoryLedger
    from sync.ledger.schema import events

    if isinstance(ledger, MemoryLedger):
        for row in [r for r in ledger.table.values() if r.lease_expires_at is not None]:
            ledger.table[row.id] = replace(row, lease_expires_at=row.lease_expires_at - timedelta(seconds=seconds))
        return

    async with ledger.engine.begin() as conn:
        leased = (await conn.execute(sa.select(events.c.id, events.c.lease_expires_at)
                                     .where(events.c.lease_owner.is_not(None)))).all()
        for row in leased:
            await conn.execute(events.update().where(events.c.id == row.id)
                               .values(lease_expires_at=row.lease_expires_at - timedelta(seconds=seconds)))
