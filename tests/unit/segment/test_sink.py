"""The Segment sink builds the track frozen at intake and never maps: a row without one is settled dead."""

from __future__ import annotations

from typing import Any

import pytest

from sync.inbound import mapper
from sync.metrics import Metrics
from sync.model import UNDECIDED, Direction, Row, Status
from sync.segment.sink import SegmentSink
from tests.unit.engine.test_core import NOW


async def test_a_row_without_its_frozen_track_is_settled_dead_and_the_mapper_is_not_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapped: list[Any] = []
    monkeypatch.setattr(mapper, "to_track", lambda *args, **kwargs: mapped.append(args))
    webhook = {"email": "a@example.com", "eventName": "emailOpen", "messageId": "e1", "dataFields": {}}
    unmapped = Row(id=7, direction=Direction.INBOUND, key="k7", kind="emailOpen", user_key="a@example.com",
                   payload=webhook, status=Status.PENDING, attempts=0, next_attempt_at=NOW, lease_owner="w",
                   lease_expires_at=None, last_error=None, reason=None, received_at=NOW, updated_at=NOW,
                   retry_from=NOW)
    sink = SegmentSink(write_key="k", host="http://127.0.0.1:9", metrics=Metrics())
    try:
        results = await sink.deliver([unmapped])
    finally:
        sink.close()

    assert mapped == []
    assert [(f.row_id, f.error, f.retryable) for f in results.failed] == [(7, UNDECIDED, False)]
    assert results.delivered == [] and results.calls == {}
