"""No request can hurt the daemon (issue 20), against the real ``python -m sync serve`` process: the daemon
stays up, answers quickly, and loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.ledger import Direction, Ledger, Status
from sync.ledger.store import create_engine
from tests.processes import Serve, free_port
from tests.support import WRITE_KEY, daemon_config

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}

# values that parse as JSON but that no calendar or number type can hold (the samples are the first two;
# the rest come from the ISO-8601 / RFC 3339 grammar Segment accepts and the JSON number grammar)
UNCONVERTIBLE = [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-14:00",
    "0001-01-01 00:00:00 +00:01", "9999-12-31T23:59:59.999999-00:01", "0001-01-01T00:59:59+01:00",
]


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """One ``serve`` process on a SQLite ledger for the module; upstreams unreachable (ingest only)."""
    folder = tmp_path_factory.mktemp("unhurt")
    port = free_port()
    config = folder / "config.toml"
    config.write_text(daemon_config(port, f"sqlite:///{folder}/ledger.db", "http://127.0.0.1:9", "http://127.0.0.1:9")
                      .replace("[outbound]\n", '[outbound]\nshared_secrets = ["s3cret"]\n'))
    process = Serve(config, port)
    asyncio.run(process.ready())
    yield process
    process.kill()


def ledger_of(serve: Serve) -> Ledger:
    return Ledger(create_engine(f"sqlite:///{Path(serve.log).parent}/ledger.db"))


async def row_status(serve: Serve, key: str) -> Status | None:
    ledger = ledger_of(serve)
    try:
        row = await ledger.get(Direction.OUTBOUND, key)
    finally:
        await ledger.close()
    return row.status if row else None


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers or BASIC) as r:
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("where", ["properties", "timestamp", "traits", "context"])
async def test_a_date_past_the_calendar_rejects_only_its_event(serve: Serve, where: str) -> None:
    """Issue 20 item 8: one such value sank a batch of five with a 500 (and the sender's retry too)."""
    run = uuid.uuid4().hex[:8]
    batch = [{"type": "track", "userId": f"u{i}", "event": "Viewed", "messageId": f"{run}-{i}"} for i in range(5)]
    for i, value in enumerate(UNCONVERTIBLE):
        event = {**batch[2], "messageId": f"{run}-bad-{i}"}
        if where == "timestamp":
            event["timestamp"] = value
        else:
            event[where] = {"when": value, "nested": [{"at": value}]}
        batch.append(event)
    for _ in range(2):  # the sender's retry gets the same answer, and duplicates are fine
        status, body = await post(f"{serve.url}/v1/batch", {"batch": batch})
        assert status == 200, body
        assert {r["index"] for r in body.get("rejected", [])} <= set(range(5, len(batch)))
    for i in range(5):
        assert await row_status(serve, f"{run}-{i}") is Status.PENDING
