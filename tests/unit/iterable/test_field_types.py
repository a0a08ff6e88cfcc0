"""The field-type rules (sync.iterable.field_types): Iterable's types from its docs, a table of values per type."""

from __future__ import annotations

from typing import Any

import pytest

from sync.iterable.field_types import FieldTypes, accepts, is_date, refusal, value_type

# (Iterable's type, value, accepted): Iterable fixes a field's type at its first write
CASES = [
    ("string", "pro", True), ("string", "2024-01-02", True), ("string", 3, False), ("string", True, False),
    ("string", ["a", "b"], True), ("string", ["a", 1], False), ("string", {"a": 1}, False),
    ("long", 3, True), ("long", 3.5, True), ("long", "1234", False), ("long", False, False),
    ("double", 1, True), ("double", "1.5", False),
    ("boolean", True, True), ("boolean", "true", False), ("boolean", 1, False),
    ("date", "2024-01-02", True), ("date", "2022-04-19 03:33:50 +00:00", True),
    ("date", "2024-01-02T03:04:05.123Z", True), ("date", 1704153600000, True), ("date", "soon", False),
    ("object", {"a": 1}, True), ("object", "x", False), ("object", [{"a": 1}], True),
    ("nested", [{"sku": "a"}], True), ("nested", {"sku": "a"}, True), ("nested", ["a"], False),
    ("string", None, True), ("long", [], True), ("geo_location", "anything", True), ("unknownType", 1, True),
]


@pytest.mark.parametrize(("locked", "value", "ok"), CASES)
def test_a_locked_type_takes_only_its_values(locked: str, value: Any, ok: bool) -> None:
    assert accepts(locked, value) is ok


def test_value_types_are_iterables_names() -> None:
    assert [value_type(v) for v in ("a", 1, 1.5, True, {}, [{}], ["a"], [], None)] == \
        ["string", "long", "double", "boolean", "object", "nested", "string", None, None]
    assert is_date("2022-04-19 03:33:50 +00:00") and not is_date("19/04/2022")


def test_the_reason_names_the_field_its_type_and_the_values_type() -> None:
    reason = refusal({"address.zip": "string"}, {"address": {"zip": 75001}}, "user")
    assert reason is not None and reason.startswith("dataFields.address.zip: Iterable has this user field as "
                                                    "string, the value is long")


def test_event_fields_are_kept_per_event_name_and_only_users_update_and_events_track_are_checked() -> None:
    types = FieldTypes()
    types.learn("events/track", {"eventName": "Paid", "dataFields": {"amount": 5, "on": "2024-01-02", "old": 1}},
                created={"amount", "on"})
    call = {"endpoint": "events/track", "body": {"eventName": "Paid", "dataFields": {"amount": "5"}}}
    assert "event 'Paid' field as long" in (types.check(call) or "")
    assert types.check({**call, "body": {"eventName": "Other", "dataFields": {"amount": "5"}}}) is None
    assert types.events["Paid"]["on"] == "date" and "old" not in types.events["Paid"]  # not created by this write
    assert types.check({"endpoint": "commerce/trackPurchase", "body": {"dataFields": {"amount": "5"}}}) is None


def test_a_refusal_names_each_field_with_the_type_iterable_has() -> None:
    types = FieldTypes()
    errors = {"1:::signup_at": {"incomingTypes": ["string", "keyword"], "expectedType": "date", "category": "user",
                                "offendingValue": "soon", "_type": "UnexpectedType"},
              "1:::seconds": {"expectedType": "long", "category": "event"}, "1:::odd": {"expectedType": "blob"}}
    bodies = [{"eventName": "Video Played", "dataFields": {"seconds": "twelve"}}, {"eventName": "Other"}]
    assert types.learn_refusal(errors, bodies) == ["signup_at", "seconds"]
    assert types.user == {"signup_at": "date"} and types.events == {"Video Played": {"seconds": "long"}}
    assert types.learn_refusal(None, bodies) == [] and types.learn_refusal({"x": "y"}, bodies) == []
