"""Iterable's latency does not cap delivery at one request per round trip (issue 19): the bulk requests of one
round are in flight at once, each person's items in exactly one of them and in received order; the bulk body
is its items' bytes, encoded once, and the type learning still reads the answer against the items."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from sync.engine.throttle import Throttle
from sync.iterable.field_types import FieldTypes
from sync.iterable.learning import LearningClient
from sync.iterable.sink import IterableSink
from sync.metrics import Metrics
from sync.model import Direction, Row, Status
from sync.outbound.mapper import IterableCall
from tests.conftest import serving

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEY = "k"


def row(n: int, person: str) -> Row:
    call = IterableCall(endpoint="events/track", user_key=person,
                        body={"eventName": "Paced", "userId": person, "id": f"e-{n}", "dataFields": {"n": n}})
    return Row(id=n, direction=Direction.OUTBOUND, key=f"e-{n}", kind="track", user_key=person, payload={},
               status=Status.PENDING, attempts=0, next_attempt_at=NOW, lease_owner="w", lease_expires_at=None,
               last_error=None, reason=None, received_at=NOW, updated_at=NOW, retry_from=NOW, mapped=call.frozen())


class Upstream:
    """A stand-in for ``events/trackBulk`` that holds the first request until a second one arrives (or 5 s)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.second = asyncio.Event()
        self.overlapped = False

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8_000_000)
        app.router.add_post("/api/events/trackBulk", self.track_bulk)
        return app

    async def track_bulk(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw.append(raw)
        self.bodies.append(json.loads(raw))
        if len(self.bodies) == 1:
            try:
                await asyncio.wait_for(self.second.wait(), timeout=5)
                self.overlapped = True
            except TimeoutError:
                pass
        else:
            self.second.set()
        count = len(self.bodies[-1]["events"])
        return web.json_response({"successCount": count, "failCount": 0, "createdFields": ["n"],
                                  "filteredOutFields": [], "disallowedEventNames": [], "invalidEmails": [],
                                  "invalidUserIds": [], "failedUpdates": {}})


async def test_a_rounds_bulk_requests_are_in_flight_at_once_each_person_in_one_of_them() -> None:
    upstream = Upstream()
    rows = [row(n, f"p{n % 300}") for n in range(1, 1801)]
    types, refusals = FieldTypes(), []
    async with serving(upstream.app()) as base, aiohttp.ClientSession() as session:
        client = LearningClient(session, base_url=base, api_key=KEY, timeout=10,
                                throttle=Throttle({"events/trackBulk": 10.0}), metrics=Metrics())
        client.watch(types, lambda: refusals.append(1))
        results = await IterableSink(client).deliver(rows)
    assert sorted(results.delivered) == [r.id for r in rows] and not results.failed
    assert upstream.overlapped  # the second request went before the first was answered
    assert [len(body["events"]) for body in upstream.bodies] == [996, 804]  # whole people: 166 and 134
    for body in upstream.bodies:
        by_person: dict[str, list[int]] = {}
        for item in body["events"]:
            by_person.setdefault(item["userId"], []).append(item["dataFields"]["n"])
        assert all(ns == sorted(ns) for ns in by_person.values())
    people = [{item["userId"] for item in body["events"]} for body in upstream.bodies]
    assert not people[0] & people[1]
    assert all(raw.startswith(b'{"events":[{') and b" " not in raw for raw in upstream.raw)  # compact
    assert types.events == {"Paced": {"n": "long"}}  # learned from the answer against the items as values


async def test_people_who_do_not_fit_in_full_requests_wait_for_the_next_round_whole() -> None:
    """2,000 rows of 600 people: two full requests, not a third nearly empty one spending a tenth of a second of
    the endpoint's limit; the people left out are not tried at all (their rows go back as they were)."""
    upstream = Upstream()
    rows = [row(n, f"p{n % 600}") for n in range(1, 2001)]
    async with serving(upstream.app()) as base, aiohttp.ClientSession() as session:
        client = LearningClient(session, base_url=base, api_key=KEY, timeout=10,
                                throttle=Throttle({"events/trackBulk": 10.0}), metrics=Metrics())
        results = await IterableSink(client).deliver(rows)
    assert len(upstream.bodies) == 2 and not results.failed
    sent = {item["id"] for body in upstream.bodies for item in body["events"]}
    assert {f"e-{n}" for n in results.delivered} == sent and 1900 < len(sent) <= 2000
    untried = [r for r in rows if r.id not in results.delivered]
    assert not {r.user_key for r in untried} & {item["userId"] for body in upstream.bodies for item in body["events"]}
