"""Segment -> Iterable through the real HTTP ingress, the ledger and the fake Iterable."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from sync.daemon import Daemon
from sync.sandbox import FakeIterable
from tests.support import WRITE_KEY, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.address[1]}{path}"


async def post(daemon: Daemon, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(
        url(daemon, path), data=raw, headers={"Content-Type": "application/json", **(headers or BASIC)}
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_identify_then_track_reach_iterable(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    batch = {"batch": [
        {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "ann@example.com", "plan": "pro"}},
        {"type": "track", "userId": "u1", "messageId": "m2", "event": "Signed Up", "properties": {"x": 1},
         "timestamp": "2026-01-02T03:04:05Z"},
    ]}
    status, body = await post(daemon, "/v1/batch", batch)
    assert (status, body) == (200, {"success": True})
    await wait_for(lambda: len(fake.event_log) == 1)
    assert fake.users[0]["email"] == "ann@example.com" and fake.users[0]["dataFields"]["plan"] == "pro"
    assert fake.event_log[0] == {"userId": "u1", "eventName": "Signed Up", "id": "m2", "dataFields": {"x": 1},
                                 "createdAt": 1767323045}
    assert [e for e, _ in fake.requests] == ["users/bulkUpdate", "events/trackBulk"]
