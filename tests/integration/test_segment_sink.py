"""The Segment sink against the fake Segment: a round stops at a Retry-After, and a batch refused as a whole
(413 as much as 400) is split until the refused message is alone (a fresh-eyes review of the inbound side)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sync.engine.intake import inbound_row
from sync.metrics import Metrics
from sync.model import Direction, Row, Status
from sync.sandbox import FakeSegment, Fault
from sync.segment import sink as segment_sink
from sync.segment.sink import SegmentSink
from tests.support import SEGMENT_KEY

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def rows(count: int) -> list[Row]:
    found = []
    for n in range(count):
        new = inbound_row({"email": f"s{n}@example.com", "eventName": "emailOpen",
                           "dataFields": {"createdAt": "2026-11-30 10:00:00 +00:00", "messageId": f"m{n}"}},
                          event_names="segment", now=NOW)
        found.append(Row(id=n + 1, direction=Direction.INBOUND, key=new.key, kind=new.kind, user_key=new.user_key,
                         payload=new.payload, status=Status.PENDING, attempts=0, next_attempt_at=NOW,
                         lease_owner="w", lease_expires_at=None, last_error=None, reason=None, received_at=NOW,
                         updated_at=NOW, retry_from=NOW, mapped=new.mapped))
    return found


async def deliver(url: str, count: int) -> Any:
    sink = SegmentSink(write_key=SEGMENT_KEY, host=url, metrics=Metrics())
    try:
        return await sink.deliver(rows(count))
    finally:
        sink.close()


async def test_a_retry_after_stops_the_round(fake_segment: tuple[FakeSegment, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a 429 asking to wait 10 s, the round's other batches went out within 40 ms."""
    fake, url = fake_segment
    monkeypatch.setattr(segment_sink, "MAX_BATCH_EVENTS", 5)  # four batches of five
    fake.faults.add(Fault(status=429, retry_after="10", times=1))
    results = await deliver(url, 20)
    assert len(fake.hits) == 1 and fake.unique() == {}
    assert sorted(f.row_id for f in results.failed) == [1, 2, 3, 4, 5]
    assert all(f.retryable and f.retry_after for f in results.failed)
    assert results.delivered == []  # the other 15 go back untried


async def test_a_batch_refused_as_too_large_is_split_not_dead_lettered(fake_segment: tuple[FakeSegment, str]) -> None:
    """A 413 (a proxy's size limit in front of Segment) dead-lettered all 30 events of the batch, first try."""
    fake, url = fake_segment
    fake.faults.add(Fault(status=413, times=1))
    results = await deliver(url, 30)
    assert results.failed == []
    assert sorted(results.delivered) == list(range(1, 31)) and len(fake.unique()) == 30
