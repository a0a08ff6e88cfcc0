"""Which of Iterable's two processing queues (bulk, single) each call takes (SPEC section 4; issue 19 item 7).

Iterable processes bulk and single calls in separate queues and asks for a 60 s buffer between them: a
person's call goes through the queue that already holds their earlier calls where Iterable offers the same call
there (``users/update`` for ``users/bulkUpdate``, ``events/track`` for ``events/trackBulk``,
``users/updateSubscriptions`` for ``users/bulkUpdateSubscriptions``); a call that has no
form in that queue (a token registration, a purchase, a deletion) waits out the buffer."""

from __future__ import annotations

import pytest

from sync.iterable.bulk import Item, bulk_failures, plan
from sync.model import Direction, Row, Status
from sync.outbound.mapper import IterableCall
from tests.unit.engine.test_core import NOW

SETTLE = 60.0


def item(row_id: int, endpoint: str, person: str = "p") -> Item:
    row = Row(id=row_id, direction=Direction.OUTBOUND, key=str(row_id), kind="x", user_key=person, payload={},
              status=Status.PENDING, attempts=0, next_attempt_at=NOW, lease_owner="w", lease_expires_at=None,
              last_error=None, reason=None, received_at=NOW, updated_at=NOW, retry_from=NOW)
    return row, IterableCall(endpoint=endpoint, body={"userId": person}, user_key=person)


@pytest.mark.parametrize(("before", "endpoints", "singles", "held"), [
    # nothing recent: bulk where it can, all single when the person's round holds a single-only call
    ("", ["users/update", "events/track"], set(), set()),
    ("", ["users/update", "users/registerDeviceToken"], {1}, set()),
    ("", ["events/track", "commerce/trackPurchase", "users/update"], {1, 3}, set()),
    # the person's last calls went single: their profile and event calls follow in that queue, no wait
    ("single", ["users/update"], {1}, set()),
    ("single", ["events/track", "users/update"], {1, 2}, set()),
    # last calls went bulk: bulk-able calls stay bulk; a call with no bulk form waits, and so does what follows
    ("bulk", ["users/update", "events/track"], set(), set()),
    ("bulk", ["users/update", "users/updateSubscriptions"], set(), set()),  # users/bulkUpdateSubscriptions
    ("single", ["users/updateSubscriptions", "users/update"], {1, 2}, set()),
    ("bulk", ["users/registerDeviceToken", "users/update"], set(), {1}),
    ("bulk", ["events/track", "commerce/trackPurchase"], set(), {2}),
])
def test_a_persons_call_takes_the_queue_that_holds_their_earlier_calls(
        before: str, endpoints: list[str], singles: set[int], held: set[int]) -> None:
    recent = {"p": (before, 100.0 - 5)} if before else {}
    planned = plan([item(n, e) for n, e in enumerate(endpoints, 1)], recent, 100.0, SETTLE)
    assert planned.singles == singles
    assert set(planned.held) == held
    assert all(55 <= wait <= SETTLE for wait in planned.held.values())


def test_the_buffer_is_forgotten_once_it_has_passed() -> None:
    planned = plan([item(1, "users/registerDeviceToken")], {"p": ("bulk", 100.0 - SETTLE)}, 100.0, SETTLE)
    assert planned.held == {} and [row.id for row, _ in planned.send] == [1]


def test_other_people_are_not_held_by_one_persons_buffer() -> None:
    items = [item(1, "users/registerDeviceToken", "p"), item(2, "users/registerDeviceToken", "q")]
    planned = plan(items, {"p": ("bulk", 99.0)}, 100.0, SETTLE)
    assert set(planned.held) == {1} and [row.id for row, _ in planned.send] == [2]


def test_a_bulk_subscription_answer_is_read_item_by_item() -> None:
    """users/bulkUpdateSubscriptions answers with top-level lists (BulkUpdateSubscriptionsResponse): refused
    identifiers are not retried, valid ones that failed on an internal error are."""
    bodies = [{"userId": "a"}, {"email": "B@example.com"}, {"userId": "c"}, {"email": "d@example.com"}]
    answer = {"successCount": 2, "failCount": 2, "invalidEmails": ["b@example.com"], "invalidUserIds": [],
              "validEmailFailures": [], "validUserIdFailures": ["c"]}
    outcome = bulk_failures(answer, bodies)
    assert {i: retryable for i, (_, retryable) in outcome.failed.items()} == {1: False, 2: True}
    assert outcome.failed[2][0] == "Iterable rejected the item: validUserIdFailures" and outcome.unmatched == 0
