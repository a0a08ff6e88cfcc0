"""Requests of one round in flight at once, per person, and a pace that gives way to 429s (issue 19). Pure."""

from __future__ import annotations

import json

import pytest

from sync.engine.batches import by_person
from sync.engine.throttle import HEADROOM, RECOVERY, SLOWEST, Throttle, adapted, new_bucket
from sync.iterable.bulk import bulk_body


def people(pairs: str) -> list[tuple[str, int]]:
    """``"a1 b1 a2"`` -> [("a", 1), ("b", 1), ("a", 2)]: a person's items in received order."""
    return [(word[0], int(word[1:])) for word in pairs.split()]


def test_each_persons_items_stay_in_one_request_and_in_their_order() -> None:
    items = people("a1 b1 c1 a2 d1 b2 a3 e1")
    parts, left, independent = by_person(items, person=lambda i: i[0], max_items=4, max_bytes=10_000,
                                         size_of=lambda _: 10)
    assert independent and left == [] and [len(part) for part in parts] == [4, 4]  # no more requests than needed
    assert sorted(i for part in parts for i in part) == sorted(items)  # nothing lost or repeated
    for person in "abcde":
        holding = [n for n, part in enumerate(parts) if any(p == person for p, _ in part)]
        assert len(holding) == 1
        assert [k for p, k in parts[holding[0]] if p == person] == sorted(k for p, k in items if p == person)


def test_people_who_do_not_fit_in_full_requests_are_left_whole_for_a_later_round() -> None:
    """Two requests' worth of items (the fewest that can carry them) and no third, nearly empty request: the
    latest person who fits nowhere waits, with all their items."""
    items = people("a1 a2 a3 b1 b2 b3 c1 c2")
    parts, left, independent = by_person(items, person=lambda i: i[0], max_items=4, max_bytes=10_000,
                                         size_of=lambda _: 10)
    assert independent and parts == [[("a", 1), ("a", 2), ("a", 3)], [("b", 1), ("b", 2), ("b", 3)]]
    assert left == [("c", 1), ("c", 2)]


def test_the_byte_limit_packs_people_too() -> None:
    parts, left, independent = by_person(people("a1 b1 a2 b2 c1"), person=lambda i: i[0], max_items=100,
                                         max_bytes=64 + 3 * 11, size_of=lambda _: 10)
    assert independent and left == [] and parts == [[("a", 1), ("a", 2), ("c", 1)], [("b", 1), ("b", 2)]]


def test_a_person_bigger_than_one_request_makes_the_requests_go_one_after_another() -> None:
    parts, left, independent = by_person(people("a1 a2 a3 b1"), person=lambda i: i[0], max_items=2,
                                         max_bytes=10_000, size_of=lambda _: 10)
    assert not independent and left == []
    assert parts == [[("a", 1), ("a", 2)], [("a", 3), ("b", 1)]]  # as chunks cuts them, in received order


def test_a_bulk_body_is_the_join_of_its_items_bytes() -> None:
    items = [{"eventName": "é", "id": "1", "dataFields": {"n": 1.5}}, {"eventName": "x", "id": "2"}]
    encoded = [json.dumps(i, separators=(",", ":"), ensure_ascii=False).encode() for i in items]
    assert json.loads(bulk_body("events", encoded)) == {"events": items}
    assert bulk_body("events", []) == b'{"events":[]}'


def test_a_429_halves_the_pace_and_accepted_requests_bring_it_back() -> None:
    paced = 10 * HEADROOM
    bucket = new_bucket(10, now=0.0)
    bucket = adapted(bucket, paced, refused=True)
    assert bucket.rate == pytest.approx(paced / 2)
    for _ in range(10):
        bucket = adapted(bucket, paced, refused=True)
    assert bucket.rate == pytest.approx(paced * SLOWEST)  # never slower than this
    steps = 0
    while bucket.rate < paced:
        bucket = adapted(bucket, paced, refused=False)
        steps += 1
    assert bucket.rate == paced and steps == pytest.approx((1 - SLOWEST) / RECOVERY, abs=1)


def test_the_throttle_adapts_each_endpoint_alone() -> None:
    throttle = Throttle({"events/trackBulk": 10.0, "users/bulkUpdate": 5.0})
    throttle.answered("events/trackBulk", 429)
    throttle.answered("not/limited", 429)
    assert throttle.rate("events/trackBulk") == pytest.approx(10 * HEADROOM / 2)
    assert throttle.rate("users/bulkUpdate") == pytest.approx(5 * HEADROOM)
    assert throttle.rate("not/limited") is None
    throttle.answered("events/trackBulk", 200)
    assert throttle.rate("events/trackBulk") == pytest.approx(10 * HEADROOM * (0.5 + RECOVERY))
