"""A fake Segment Tracking API, faithful to its documented behaviour.

``POST /v1/batch`` (also ``/v1/import``): Basic auth or ``writeKey`` in the body; gzip bodies; 400
for invalid JSON, a body over 500 KB or an event over 32 KB; 200 ``{"success": true}`` otherwise.
Like the real edge, a wrong write key still gets 200 (the events are dropped) unless
``strict_write_key`` is set; ``drop_all`` answers 200 and drops everything, as Segment does for a write key
of another region (an EU workspace posted to api.segment.io). Over ``rate_limit`` requests a second it
answers 429 with ``Retry-After`` and ``X-RateLimit-Reset``. Sizes are measured on the bytes the library
sends (after gzip is undone; ``json.dumps`` with its ASCII escaping for each event).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from sync.sandbox.faults import Faults

MAX_BATCH_BYTES = 500 * 1024
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 2500

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")


class FakeSegment:
    def __init__(self, write_key: str = "segment-test-key", *, strict_write_key: bool = False,
                 drop_all: bool = False, rate_limit: float | None = None) -> None:
        self.write_key, self.strict_write_key = write_key, strict_write_key
        self.drop_all, self.rate_limit = drop_all, rate_limit
        self.faults = Faults()
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []  # every accepted message, duplicates included
        self.dropped: list[dict[str, Any]] = []  # accepted with 200 but discarded (bad key, > 2,500)
        self.invalid: list[tuple[str, dict[str, Any]]] = []  # (reason, message): 200, then dropped as invalid
        self.batches = 0
        self.hits: list[float] = []  # monotonic arrival time of every request
        self.poison_events: set[str] = set()  # a batch holding one of these events gets 400
        self.faults.clear()

    def unique(self) -> dict[str, dict[str, Any]]:
        """Messages by messageId, as Segment's dedup would keep them."""
        return {m["messageId"]: m for m in self.messages}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BATCH_BYTES * 8)
        app.router.add_post("/v1/batch", self._batch)
        app.router.add_post("/v1/import", self._batch)
        app.router.add_get("/_fake/state", self._state)
        return app

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(time.monotonic())
        injected = await self.faults.apply(request)
        if injected is not None:
            return injected
        if self._over_limit():
            wait = "1"
            return web.json_response({"code": "too_many_requests", "message": "rate limit exceeded"}, status=429,
                                     headers={"Retry-After": wait, "X-RateLimit-Reset": wait})
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip" and raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        if len(raw) > MAX_BATCH_BYTES:
            return _error(400, "payload too large")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            return _error(400, "batch is required")
        if any(len(json.dumps(m)) > MAX_EVENT_BYTES for m in body["batch"]):
            return _error(400, "event exceeds 32KB")
        if any(isinstance(m, dict) and m.get("event") in self.poison_events for m in body["batch"]):
            return _error(400, "invalid event")
        key = _basic_user(request.headers.get("Authorization")) or body.get("writeKey")
        if self.drop_all:
            self.dropped.extend(body["batch"])
            return web.json_response({"success": True})
        if key != self.write_key:
            if self.strict_write_key:
                return _error(401, "invalid write key")
            self.dropped.extend(body["batch"])
            return web.json_response({"success": True})
        self.batches += 1
        keep, drop = (body["batch"], []) if len(body["batch"]) <= MAX_BATCH_EVENTS else ([], body["batch"])
        for message in keep:
            reason = message_problem(message)
            if reason:
                self.invalid.append((reason, message))
        keep = [m for m in keep if not message_problem(m)]
        self.messages.extend(keep)
        self.dropped.extend(drop)
        return web.json_response({"success": True})

    def _over_limit(self) -> bool:
        if not self.rate_limit:
            return False
        now = time.monotonic()
        recent = [t for t in self.hits if now - t < 1.0]
        return len(recent) > self.rate_limit

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response({"messages": self.messages, "batches": self.batches,
                                  "dropped": len(self.dropped)})


def message_problem(message: Any) -> str | None:
    """Why Segment would drop a message after its 200 (Tracking API docs, "Common fields" and "Timestamps":
    a ``type``, a ``userId`` or ``anonymousId``, a track's ``event``, ISO-8601 times). Written here from the
    docs: Python's own ISO reader, never the daemon's."""
    if not isinstance(message, dict) or message.get("type") not in MESSAGE_TYPES:
        return "type: missing or unknown"
    if not (message.get("userId") or message.get("anonymousId")):
        return "userId or anonymousId is required"
    if message["type"] == "track" and not message.get("event"):
        return "event is required for track"
    for name in ("timestamp", "sentAt", "originalTimestamp"):
        value = message.get(name)
        if value is None:
            continue
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return f"{name}: not an ISO-8601 time"
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": "bad_request" if status == 400 else "unauthorized", "message": message},
                             status=status)


def _basic_user(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:]).decode().split(":", 1)[0]
    except ValueError:
        return None
