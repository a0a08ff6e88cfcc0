"""The Iterable sink sends the call frozen at intake and never maps: a row without one (recorded before the
mapping was stored, not decided by revision 0009) is settled dead with a reason that says what to do."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sync.iterable.client import Reply, encoded
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


class EncodingClient(Client):
    """Encodes what it sends, as the real client does, and answers bulk requests with nothing failed."""

    async def post(self, endpoint: str, body: dict[str, Any], *, method: str = "POST",
                   limit: str | None = None) -> Reply:
        encoded(body)
        return await super().post(endpoint, body, method=method, limit=limit)

    async def post_bulk(self, endpoint: str, field: str, items: Any, values: Any) -> Reply:
        self.sent.append((endpoint, {field: values}))
        return Reply(status=200, body={"successCount": len(values), "failCount": 0})


async def test_a_stored_call_no_request_can_carry_is_dead_alone_and_the_round_goes_on() -> None:
    """A lone surrogate (``"\\ud800"`` in the event's JSON) recorded before intake refused it: encoding the
    request raised, the whole round was released, and every round after failed the same way, for every
    person. That row alone is dead-lettered now; the others are sent."""
    def track(row_id: int, user: str, value: str) -> Row:
        call = IterableCall(endpoint="events/track", body={"userId": user, "eventName": "S", "id": f"m{row_id}",
                                                             "dataFields": {"v": value}}, user_key=user)
        return replace(row(row_id, {}, call.frozen()), user_key=user)

    purchase = IterableCall(endpoint="commerce/trackPurchase", body={"id": "o\ud800", "user": {"userId": "u3"}},
                            user_key="u3").frozen()
    rows = [track(1, "u1", "x\ud800"), track(2, "u2", "fine"), replace(row(3, {}, purchase), user_key="u3")]
    client = EncodingClient()

    results = await IterableSink(client, settle_seconds=0).deliver(rows)  # type: ignore[arg-type]

    assert sorted((f.row_id, f.retryable) for f in results.failed) == [(1, False), (3, False)]
    assert all("cannot be encoded" in f.error for f in results.failed)
    assert results.delivered == [2]


class Answering(Client):
    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply

    async def post(self, endpoint: str, body: dict[str, Any], *, method: str = "POST",
                   limit: str | None = None) -> Reply:
        self.sent.append((endpoint, body))
        return self.reply


async def test_a_single_calls_history_names_no_user_id_in_its_endpoint_or_its_answer() -> None:
    """The history kept `users/byUserId/gina-secret` as a deletion's endpoint and Iterable's answer quoting the
    userId unmasked (a forgotten person's row showed it): the label and the masked answer are kept instead."""
    deletion = IterableCall(endpoint="users/byUserId/gina-secret", body={}, user_key="u1", method="DELETE",
                            limit="users/delete").frozen()
    purchase = IterableCall(endpoint="commerce/trackPurchase", body={"id": "o1", "user": {"userId": "gina-secret"}},
                            user_key="u1").frozen()
    quoting = Reply(status=400, body={"code": "BadParams", "msg": "no user gina-secret (gina@example.com)"})
    for frozen, label in ((deletion, "users/delete"), (purchase, "commerce/trackPurchase")):
        results = await IterableSink(Answering(quoting), settle_seconds=0).deliver([row(1, {}, frozen)])  # type: ignore[arg-type]
        call = results.calls[1]
        assert call.endpoint == label and call.status == 400
        assert "gina" not in call.answer and "[userId]" in call.answer, call.answer
