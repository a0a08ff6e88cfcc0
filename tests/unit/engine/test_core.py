"""Pure pieces: retry schedule, token buckets, chunking, signatures, settlement and waves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from sync.engine import retry as schedule
from sync.engine.batches import chunks
from sync.engine.settlement import Failure, Results, settlement_for
from sync.engine.throttle import new_bucket, reserve
from sync.http import auth
from sync.iterable.bulk import bulk_failures, waves
from sync.model import Direction, Row, Status
from sync.outbound.mapper import IterableCall

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def row(row_id: int, attempts: int = 0, received: datetime = NOW, user: str = "u") -> Row:
    return Row(id=row_id, direction=Direction.OUTBOUND, key=str(row_id), kind="track", user_key=user, payload={},
               status=Status.PENDING, attempts=attempts, next_attempt_at=received, lease_owner="w",
               lease_expires_at=None, last_error=None, reason=None, received_at=received, updated_at=received,
               retry_from=received)


@pytest.mark.parametrize("attempts", [1, 2, 5, 10, 30])
def test_backoff_is_full_jitter_under_an_exponential_cap(attempts: int) -> None:
    rng = random.Random(7)
    delays = [schedule.backoff(attempts, rng) for _ in range(500)]
    ceiling = min(schedule.CAP_SECONDS, 2**attempts)
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1  # spread, not synchronized


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    for _ in range(100):
        at = schedule.next_attempt(now=NOW, received_at=NOW, attempts=1, max_retry_hours=72, rng=rng,
                                   retry_after=30)
        assert at is not None and timedelta(seconds=30) <= at - NOW <= timedelta(seconds=34)


def test_give_up_at_the_end_of_the_window() -> None:
    rng = random.Random(1)
    received = NOW - timedelta(hours=71, minutes=59)
    at = schedule.next_attempt(now=NOW, received_at=received, attempts=20, max_retry_hours=72, rng=rng)
    assert at is not None and at <= received + timedelta(hours=72)
    assert schedule.next_attempt(now=NOW, received_at=NOW - timedelta(hours=72), attempts=3, max_retry_hours=72,
                                 rng=rng) is None


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5.0), ("0", 0.0), ("soon", None), (None, None), ("Mon, 01 Jun 2026 00:01:00 GMT", 60.0)])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert schedule.parse_retry_after(header, NOW) == seconds


def test_token_bucket_spaces_requests_evenly() -> None:
    bucket = new_bucket(10, now=0.0)  # paced at 95%: 9.5 per second
    waits = []
    for _ in range(4):
        bucket, wait = reserve(bucket, now=0.0)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 1 / 9.5, 2 / 9.5, 3 / 9.5])
    bucket, wait = reserve(bucket, now=10.0)
    assert wait == 0.0


def test_paced_requests_never_exceed_a_sliding_window_limit() -> None:
    """Iterable's limits are per second; the fake checks them with a sliding window."""
    bucket, sent, now = new_bucket(5, now=0.0), [], 0.0
    for _ in range(40):
        bucket, wait = reserve(bucket, now)
        now += wait
        sent.append(now)
    assert max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent) <= 5


def test_chunks_respect_count_and_bytes() -> None:
    items = ["x" * 10] * 25
    assert [len(c) for c in chunks(items, max_items=10, max_bytes=10_000, size_of=len)] == [10, 10, 5]
    assert [len(c) for c in chunks(items, max_items=100, max_bytes=64 + 55, size_of=len)] == [5, 5, 5, 5, 5]
    assert [len(c) for c in chunks(["y" * 500, "z"], max_items=10, max_bytes=100, size_of=len)] == [1, 1]


def test_signature_over_body_and_first_array_element() -> None:
    body = b'{"type":"track"}'
    good = hmac.new(b"s3", body, hashlib.sha1).hexdigest()
    assert auth.signature_ok(body, good, ["old", "s3"])
    assert not auth.signature_ok(body, good, ["old"]) and not auth.signature_ok(body, None, ["s3"])
    first = b'{"a": "\\u00e9", "b": [1, {"c": 2}]}'
    array = b" [\n" + first + b' , {"d": 3}]'
    assert auth.first_element(array) == first
    assert auth.signature_ok(array, hmac.new(b"s3", first, hashlib.sha1).hexdigest(), ["s3"])
    assert auth.first_element(b"[") is None and auth.first_element(b"\xff") is None


def test_basic_username_and_constant_time_match() -> None:
    header = "Basic " + base64.b64encode(b"key:").decode()
    assert auth.basic_username(header) == "key" and auth.basic_username("Bearer x") is None
    assert auth.basic_username("Basic !!!") is None
    assert auth.matches_any("b", ["a", "b"]) and not auth.matches_any("", ["", "a"])


def test_settlement_retries_dead_letters_and_releases() -> None:
    rows = [row(1), row(2, attempts=4, received=NOW - timedelta(seconds=61)), row(3), row(4),
            row(5, received=NOW - timedelta(hours=80))]
    results = Results(delivered=[1], failed=[
        Failure(row_id=2, error="notFound", retryable=True, window_seconds=60),
        Failure(row_id=3, error="HTTP 503", retryable=True, retry_after=10),
        Failure(row_id=5, error="HTTP 503", retryable=True)])
    settlement = settlement_for(rows, results, now=NOW, max_retry_hours=72, rng=random.Random(1))
    assert settlement.delivered == (1,) and settlement.released == (4,)
    assert [r[0] for r in settlement.retry] == [3] and settlement.retry[0][1] >= NOW + timedelta(seconds=10)
    assert dict(settlement.dead)[2].startswith("gave up after 5 attempts")
    assert 5 in dict(settlement.dead)


def test_waves_keep_each_users_order_across_endpoints() -> None:
    def item(row_id: int, endpoint: str, user: str) -> tuple[Row, IterableCall]:
        return row(row_id, user=user), IterableCall(endpoint=endpoint, body={}, user_key=None)

    batch = [item(1, "events/track", "a"), item(2, "users/update", "a"), item(3, "users/update", "b"),
             item(4, "events/track", "b"), item(5, "events/track", "a"), item(6, "commerce/updateCart", "b")]
    assert [[r.id for r, _ in wave] for wave in waves(batch)] == [[1, 3], [2, 4], [5, 6]]


def test_bulk_failures_match_items_by_identifier() -> None:
    bodies = [{"email": "a@x.io"}, {"userId": "u2"}, {"email": "C@x.io", "eventName": "E"},
              {"email": "d@x.io", "eventName": "Nope"}, {"email": "e@x.io"}]
    response = {"successCount": 1, "failCount": 4, "disallowedEventNames": ["Nope"],
                "failedUpdates": {"invalidEmails": ["a@x.io"], "notFoundUserIds": ["u2"],
                                  "forgottenEmails": ["c@x.io"], "conflictEmails": []}}
    found = bulk_failures(response, bodies).failed
    assert found == {0: ("Iterable rejected the item: failedUpdates.invalidEmails", False),
                     1: ("Iterable rejected the item: failedUpdates.notFoundUserIds", True),
                     2: ("Iterable rejected the item: failedUpdates.forgottenEmails", False),
                     3: ("Iterable rejected the item: disallowedEventNames (event \"Nope\")", False)}
    assert bulk_failures({"invalidEmails": ["e@x.io"]}, bodies).failed == {
        4: ("Iterable rejected the item: invalidEmails", False)}
    assert bulk_failures("not json", bodies).failed == {}


async def test_throttle_paces_requests_on_a_real_loop() -> None:
    import time

    from sync.engine.throttle import Throttle

    throttle = Throttle({"events/trackBulk": 100.0})
    started = time.monotonic()
    for _ in range(28):
        await throttle.acquire("events/trackBulk")
    await throttle.acquire("not/limited")
    assert 0.27 <= time.monotonic() - started < 1.0  # 27 waits of 1/95 s


async def test_the_supervisor_stops_the_daemon_when_a_background_task_dies() -> None:
    import asyncio

    from sync.app import _supervise

    async def crash() -> None:
        raise RuntimeError("worker bug")

    assert await _supervise([asyncio.create_task(crash())], asyncio.Event()) is True
    stop = asyncio.Event()
    stop.set()
    sleeper = asyncio.create_task(asyncio.sleep(10))
    assert await _supervise([sleeper], stop) is False
    sleeper.cancel()
