"""Hostile input against every HTTP endpoint: malformed and truncated JSON, wrong types, deep nesting,
huge strings and numbers, unicode, oversize and slow bodies. Never a 5xx for bad input, never a crash,
nothing recorded for a request that failed authentication."""

# Real time on purpose: a slow client trickles its body (``raw_request(pause=...)``) past the body-read timeout.

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.app import Daemon, running
from sync.http.auth import first_element
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.support import (
    ITERABLE_KEY,
    SEGMENT_KEY,
    SHARED_SECRET,
    WEBHOOK_TOKEN,
    WRITE_KEY,
    make_config,
    sign,
)

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
SEGMENT_PATHS = ["/v1/batch", "/v1/import", "/v1/identify", "/v1/track", "/v1/page", "/v1/screen", "/v1/group",
                 "/v1/alias"]


@dataclass
class Live:
    """A daemon running on its own event loop in a thread, so sync hypothesis tests can hit it."""

    loop: asyncio.AbstractEventLoop
    daemon: Daemon
    iterable: FakeIterable

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.address[1]}"

    def rows(self) -> int:
        stats = asyncio.run_coroutine_threadsafe(self.daemon.ledger.stats(), self.loop).result(10)
        return sum(stats.counts.values())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/ledger.db"
    else:
        from tests.conftest import _blocking, _reset_pg

        url = request.getfixturevalue("pg_url")
        _blocking(_reset_pg(url))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()
    iterable, segment = FakeIterable(ITERABLE_KEY), FakeSegment(SEGMENT_KEY)

    async def start() -> Daemon:
        servers = [TestServer(iterable.app(), host="127.0.0.1"), TestServer(segment.app(), host="127.0.0.1")]
        for server in servers:
            await server.start_server()
            stack.push_async_callback(server.close)
        config = make_config(ledger_url=url, iterable_url=str(servers[0].make_url("")).rstrip("/"),
                             segment_url=str(servers[1].make_url("")).rstrip("/"))
        return await stack.enter_async_context(running(config))

    daemon = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield Live(loop=loop, daemon=daemon, iterable=iterable)
    asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(60)
    asyncio.run_coroutine_threadsafe(_cancel_leftovers(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def _cancel_leftovers() -> None:
    """Connections the fuzzing left half-open (slow bodies) end with the loop, quietly."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.text(alphabet="\x00\ud800\ufffe\u202e"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
segment_shaped = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "identify", "page", "alias", "bogus"]) | json_values,
    "event": json_values, "userId": json_values, "messageId": json_values, "properties": json_values,
    "traits": json_values, "context": json_values, "timestamp": json_values, "integrations": json_values,
    "batch": st.lists(json_values, max_size=4), "writeKey": json_values,
    "eventName": json_values, "email": json_values, "dataFields": json_values,
})
sample = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]}).encode()


def encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(encoded),
    segment_shaped.map(encoded),
    st.integers(min_value=1, max_value=len(sample) - 1).map(lambda n: sample[:n]),  # truncated
    st.integers(min_value=1000, max_value=60_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(min_value=4400, max_value=20_000).map(lambda n: b'{"batch": [' + b"9" * n + b"]}"),  # huge number
    st.integers(min_value=40_000, max_value=900_000).map(lambda n: encoded({"type": "track", "event": "x" * n})),
    st.sampled_from([b"", b"null", b"NaN", b'"\\ud800"', b"\xef\xbb\xbf{}", b'{"batch": [null, 1, "x", []]}']),
)


def credentials(path: str, body: bytes) -> dict[str, str]:
    if path == "/iterable/webhook":
        return {"Authorization": WEBHOOK_TOKEN}
    if path == "/segment/webhook":
        return {"X-Signature": sign(signed_part(body) or body, SHARED_SECRET)}
    return BASIC


def signed_part(body: bytes) -> bytes | None:
    """What Segment signs: the body, or for a JSON array its first element (None: there is none)."""
    return first_element(body) if body.lstrip()[:1] == b"[" else body


def wrong_credentials(path: str, body: bytes) -> dict[str, str]:
    if path == "/iterable/webhook":
        return {"Authorization": WEBHOOK_TOKEN + "0"}
    if path == "/segment/webhook":
        return {"X-Signature": sign(body, "not-the-secret")}
    return {"Authorization": "Basic " + base64.b64encode(b"stolen-key:").decode()}


PATHS = [*SEGMENT_PATHS, "/segment/webhook", "/iterable/webhook"]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(path=st.sampled_from(PATHS), body=bodies, content_type=st.sampled_from(["application/json", "text/plain"]))
def test_authenticated_garbage_is_never_a_5xx(live: Live, path: str, body: bytes, content_type: str) -> None:
    response = requests.post(f"{live.url}{path}", data=body, timeout=30,
                             headers={"Content-Type": content_type, **credentials(path, body)})
    unsignable = path == "/segment/webhook" and signed_part(body) is None
    allowed = (200, 400, 401, 413) if unsignable else (200, 400, 413)
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    reply = response.json()
    assert isinstance(reply["success"], bool)
    if response.status_code != 200:
        assert reply["error"]


@FUZZ
@given(path=st.sampled_from(PATHS), body=bodies)
def test_failed_authentication_records_nothing(live: Live, path: str, body: bytes) -> None:
    before = live.rows()
    response = requests.post(f"{live.url}{path}", data=body, timeout=30, headers=wrong_credentials(path, body))
    assert response.status_code in (400, 401, 413)
    assert live.rows() == before


def test_a_valid_key_in_the_body_cannot_rescue_a_wrong_basic_header(live: Live) -> None:
    before = live.rows()
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}], "writeKey": WRITE_KEY}
    response = requests.post(f"{live.url}/v1/batch", json=body, timeout=10, headers=wrong_credentials("/v1/b", b""))
    assert response.status_code == 401 and live.rows() == before


def raw_request(live: Live, head: bytes, chunks: list[bytes], pause: float = 0.0, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", live.daemon.address[1]), timeout=read_timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            time.sleep(pause)
            with contextlib.suppress(OSError):
                sock.sendall(chunk)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and b"success" in data:
                    break
    return data


def test_an_announced_oversize_body_is_refused_before_it_is_read(live: Live) -> None:
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + BASIC["Authorization"].encode() + b"\r\nContent-Length: 50000000\r\n\r\n")
    started = time.monotonic()
    reply = raw_request(live, head, [])
    assert reply.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 5


def test_a_chunked_oversize_body_is_cut_off_at_the_limit(live: Live) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"batch": ['
        for _ in range(40):
            yield b" " * 65536
        yield b"]}"

    response = requests.post(f"{live.url}/v1/batch", data=chunks(), headers=BASIC, timeout=30)
    assert response.status_code == 413


def test_a_slow_body_times_out_without_holding_the_daemon(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sync.http.ingress.BODY_READ_SECONDS", 1.0)
    body = json.dumps(ITERABLE_WEBHOOKS[0]).encode()
    head = (b"POST /iterable/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + WEBHOOK_TOKEN.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n\r\n")
    before = live.rows()
    started = time.monotonic()
    reply = raw_request(live, head, [body[i:i + 10] for i in range(0, 40, 10)], pause=0.5)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
    assert requests.get(f"{live.url}/healthz", timeout=5).status_code == 200
    assert live.rows() == before


def test_after_all_that_the_daemon_still_works(live: Live) -> None:
    live.iterable.users.append({"email": "still@example.com", "userId": "still", "dataFields": {}})
    response = requests.post(f"{live.url}/v1/track", json={"userId": "still", "event": "Alive", "messageId": "alive"},
                             headers=BASIC, timeout=10)
    assert response.status_code == 200
    for _ in range(100):
        if "alive" in live.iterable.events:
            break
        time.sleep(0.05)
    assert "alive" in live.iterable.events
    assert requests.get(f"{live.url}/readyz", timeout=5).json()["ready"] is True




# Issue 20 item 8: values that parse but cannot be converted, mixed into batches with good events and sent
# concurrently. Dates at the calendar's edges with offsets (RFC 3339 allows +/-23:59), in every place Segment
# allows a date; numbers at and past a float's range; deep and wide objects; many distinct people at once.
edge_dates = st.one_of(  # each one is past year 1 or 9999 once its offset applies
    st.builds(lambda minute, hours, minutes, separator: f"0001-01-01{separator}00:{minute:02d}:00+{hours:02d}:{minutes:02d}",
              st.integers(0, 59), st.integers(1, 23), st.integers(0, 59), st.sampled_from(["T", " "])),
    st.builds(lambda second, hours, fraction, separator: f"9999-12-31{separator}23:59:{second:02d}{fraction}-{hours:02d}:00",
              st.integers(0, 59), st.integers(1, 23), st.sampled_from(["", ".999999", ".5"]), st.sampled_from(["T", " "])),
    st.sampled_from(["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999-00:01", "0001-01-01 00:00:00 +01:00"]))
huge_numbers = st.sampled_from([1e308, -1e308, 5e-324, 10**40, -(10**300), 2**63, -(2**63) - 1, 1.7976931348623157e308])


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return value


hostile_values = st.one_of(edge_dates, huge_numbers, st.integers(40, 900).map(deep),
                           st.integers(1000, 6000).map(lambda n: {f"k{i}": i for i in range(n)}),
                           st.lists(edge_dates | huge_numbers, min_size=1, max_size=5))
hostile_events = st.builds(
    lambda kind, where, value, n: {
        "type": kind, "userId": f"hostile-{n}", "event": "Viewed", "name": "Page",
        **({where: value} if where.endswith("imestamp") or where == "sentAt" else {where: {"v": value}})},
    st.sampled_from(["track", "identify", "page", "screen", "group"]),
    st.sampled_from(["properties", "traits", "context", "timestamp", "originalTimestamp", "sentAt"]),
    hostile_values, st.integers(0, 10_000))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=st.lists(hostile_events, min_size=1, max_size=4), seed=st.integers(0, 2**32))
def test_values_that_cannot_be_converted_never_sink_a_batch_under_concurrency(live: Live, bad: list[dict[str, Any]],
                                                                              seed: int) -> None:
    rng = random.Random(seed)

    def send(sender: int) -> None:
        good = [{"type": "track", "userId": f"good-{seed}-{sender}-{n}", "event": "Fine",
                 "messageId": f"good-{seed}-{sender}-{n}", "context": {"traits": {"email": f"g{n}@x.io"}}}
                for n in range(rng.randrange(1, 30))]
        batch = good + [{**event, "messageId": f"bad-{seed}-{sender}-{i}"} for i, event in enumerate(bad)]
        order = list(range(len(batch)))
        rng.shuffle(order)
        body = {"batch": [batch[i] for i in order]}
        response = requests.post(f"{live.url}/v1/batch", json=body, headers=BASIC, timeout=30)
        assert response.status_code in (200, 413), (response.status_code, response.text[:300])
        if response.status_code == 413:  # only a body over server.max_body_bytes (wide objects)
            return
        refused = {order[r["index"]] for r in response.json().get("rejected", [])}
        assert refused <= set(range(len(good), len(batch)))
        for event in good:
            row = asyncio.run_coroutine_threadsafe(
                live.daemon.ledger.get(Direction.OUTBOUND, event["messageId"]), live.loop).result(10)
            assert row is not None and row.status is not Status.REJECTED

    with ThreadPoolExecutor(4) as pool:
        for result in [pool.submit(send, sender) for sender in range(4)]:
            result.result()


def test_many_distinct_people_in_one_batch_are_recorded(live: Live) -> None:
    people = [{"type": "identify", "userId": f"crowd-{n}", "messageId": f"crowd-{n}",
               "traits": {"email": f"crowd{n}@example.com"}} for n in range(1000)]
    response = requests.post(f"{live.url}/v1/batch", json={"batch": people}, headers=BASIC, timeout=60)
    assert response.status_code == 200 and "rejected" not in response.json()
    row = asyncio.run_coroutine_threadsafe(live.daemon.ledger.get(Direction.OUTBOUND, "crowd-999"),
                                           live.loop).result(10)
    assert row is not None
