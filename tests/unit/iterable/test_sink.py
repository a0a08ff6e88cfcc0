"""The Iterable sink sends the call frozen at intake and never maps: a row without one (recorded before the
mapping was stored, not decided by revision 0009) is settled dead with a reason that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from sync.iterable.client import Reply
from sync.iterable.sink import IterableSink
from sync.model import UNDECIDED, Direction, Row, Status
from sync.outbound import mapper
from sync.outbound.mapper import IterableCall
from tests.unit.engine.test_core import NOW


class Client:
    """The sink's one seam to Iterable: records what it is asked to send, answers 200."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def post(self, endpoint: str, body: dict[str, Any], *, method: str = "POST",
                   limit: str | None = None) -> Reply:
        self.sent.append((endpoint, body))
        return Reply(status=200, body={})


def row(row_id: int, payload: dict[str, Any], mapped: dict[str, Any] | None) -> Row:
    return Row(id=row_id, direction=Direction.OUTBOUND, key=f"m{row_id}", kind="track", user_key="u1",
               payload=payload, status=Status.PENDING, attempts=0, next_attempt_at=NOW, lease_owner="w",
               lease_expires_at=None, last_error=None, reason=None, received_at=NOW, updated_at=NOW,
               retry_from=NOW, mapped=mapped)


async def test_a_row_without_its_frozen_call_is_settled_dead_and_the_mapper_is_not_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapped: list[Any] = []
    monkeypatch.setattr(mapper, "map_event", lambda *args, **kwargs: mapped.append(args))
    frozen = IterableCall(endpoint="commerce/trackPurchase", body={"id": "o1", "user": {"userId": "u1"}},
                          user_key="u1").frozen()
    # the row that died of ``cannot map the event: KeyError('type')`` when the sink still mapped
    unmapped = row(1, {"messageId": "m1", "userId": "u1", "event": "Order Completed"}, None)
    client = Client()

    results = await IterableSink(client, settle_seconds=0).deliver([unmapped, row(2, {}, frozen)])  # type: ignore[arg-type]

    assert mapped == []
    assert [(f.row_id, f.error, f.retryable) for f in results.failed] == [(1, UNDECIDED, False)]
    assert "python -m sync migrate" in UNDECIDED and "ledger retry --remap" in UNDECIDED
    assert results.delivered == [2] and client.sent == [("commerce/trackPurchase", frozen["body"])]
