"""Shared pieces of the reliability suite: the audit of what was acknowledged against what arrived."""

# Real time on purpose: ``Load`` paces its requests (``pause``) as steady traffic.

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sync.inbound.mapper import inbound_key, message_id
from sync.sandbox import FakeIterable, FakeSegment
from tests.support import WEBHOOK_TOKEN, WRITE_KEY, daemon_config  # noqa: F401 - re-exported

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
USERS = 25


def known_users(fake: FakeIterable) -> None:
    fake.add_users(USERS, "k")


@dataclass
class Load:
    """Steady traffic in both directions; remembers exactly what was acknowledged with a 200."""

    url: str
    outbound: set[str] = field(default_factory=set)
    inbound: set[str] = field(default_factory=set)  # expected Segment messageIds
    sent: set[str] = field(default_factory=set)  # every id posted, acknowledged or not
    attempts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    refused: int = 0
    _ids: Any = field(default_factory=itertools.count)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, pause: float = 0.01) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self._stop.is_set():
                await asyncio.gather(self._segment_batch(session), self._iterable_webhook(session))
                await asyncio.sleep(pause)

    def stop(self) -> None:
        self._stop.set()

    async def _post(self, session: aiohttp.ClientSession, path: str, body: Any, headers: dict[str, str]) -> bool:
        self.attempts += 1
        try:
            async with session.post(f"{self.url}{path}", json=body, headers=headers) as response:
                await response.read()
                self.statuses[response.status] += 1
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.refused += 1
            return False

    async def _segment_batch(self, session: aiohttp.ClientSession) -> None:
        ids = [f"out-{next(self._ids)}" for _ in range(8)]
        self.sent.update(ids)
        batch = [{"type": "track", "userId": f"k{random.randrange(USERS)}", "event": "Kill Loop", "messageId": i,
                  "properties": {"n": i}} for i in ids]
        if await self._post(session, "/v1/batch", {"batch": batch}, BASIC):
            self.outbound.update(ids)

    async def _iterable_webhook(self, session: aiohttp.ClientSession) -> None:
        n = next(self._ids)
        webhook = {"email": f"k{n % USERS}@example.com", "eventName": random.choice(["emailOpen", "pushSend"]),
                   "dataFields": {"messageId": f"in-{n}", "createdAt": "2026-11-01 10:00:00 +00:00",
                                  "campaignId": n}}
        expected = message_id(inbound_key(webhook))
        self.sent.add(expected)
        if await self._post(session, "/iterable/webhook", webhook, {"Authorization": WEBHOOK_TOKEN}):
            self.inbound.add(expected)


def audit(load: Load, iterable: FakeIterable, segment: FakeSegment) -> dict[str, int]:
    """Lost = acknowledged but never received; repeats = extra sends of an id already received;
    unacknowledged = received although the sender got no 200 (committed, then the process died before
    answering: the sender retries and the retry is a duplicate); phantom = received but never sent."""
    segment_ids = [m["messageId"] for m in segment.messages]
    return {
        "acknowledged_outbound": len(load.outbound),
        "acknowledged_inbound": len(load.inbound),
        "lost_outbound": len(load.outbound - set(iterable.events)),
        "lost_inbound": len(load.inbound - set(segment_ids)),
        "repeats_outbound": len(iterable.event_log) - len(iterable.events),
        "repeats_inbound": len(segment_ids) - len(set(segment_ids)),
        "unacknowledged_but_delivered": len((set(iterable.events) - load.outbound)
                                            | (set(segment_ids) - load.inbound)),
        "phantom": len((set(iterable.events) | set(segment_ids)) - load.sent),
    }
