"""SPEC section 13: the daemon reads an event as Segment does before a destination sees it.

Each table is written from public sources, not only from the issue's samples: segmentio/isodate's test cases
(``test/index.test.js``), segmentio/facade (``lib/facade.js`` ``enabled``, ``lib/track.js`` aliases and
``currency``), the Segment spec pages (Ecommerce Events v1/v2 names, Timestamps, integrations object), and
Iterable's API docs (``CommerceItem``, ``InvalidEmailAddressError``, system webhook samples).
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync.engine.explain import readings
from sync.errors import InvalidEvent
from sync.inbound import mapper as inbound
from sync.iterable.identifiers import email_problem, is_email
from sync.outbound.companions import derived
from sync.outbound.mapper import IterableCall, Options, Skip, map_event
from sync.sandbox.iterable_rules import item_problem, valid_email
from sync.segment import semantics as semantic
from sync.segment import timestamps
from sync.segment.spec import validate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def mapped(event: dict[str, Any], **options: Any) -> IterableCall | Skip:
    return map_event(validate({"messageId": "m-1", **event}), Options(**options))


def body(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    call = mapped(event, **options)
    assert isinstance(call, IterableCall), call
    return call.body


# -- 1. timestamps ------------------------------------------------------------------------------

ISODATE_CASES = {  # segmentio/isodate test/index.test.js: ISO text -> epoch milliseconds
    "2013": 1356998400000,
    "2013-09": 1377993600000,
    "2013-09-04": 1378252800000,
    "2013-09-04T01:15": 1378257300000,
    "2013-09-04T01:15:19": 1378257319000,
    "2013-09-04T01:15:19.610": 1378257319610,
    "2013-09-04T01:15:19.610Z": 1378257319610,
    "2013-09-04T01:15:19.610-0700": 1378282519610,
    "2013-09-04T01:15:19.610-07:00": 1378282519610,
    "2014-07-02T19:48:49.099Z": 1404330529099,
}
MORE_FORMS = {  # isodate's grammar beyond its tests: basic format, space, offsets without minutes, fractions
    "2024-05-01 10:00:00+00": 1714557600000,  # PostgreSQL's text form (the issue)
    "2024-05-01": 1714521600000,  # date only (the issue)
    "20240501": 1714521600000,
    "20240501T1000": 1714557600000,
    "2024-05-01T10:00:00,5Z": 1714557600500,
    "2024-05-01T10:00:00.123456789Z": 1714557600123,
    "2024-05-01T12:00:00+02": 1714557600000,
    "2024-05-01 12:00:00.1+0200": 1714557600100,
    "2024-05-01T10:00": 1714557600000,
}


@pytest.mark.parametrize(("text", "millis"), [*ISODATE_CASES.items(), *MORE_FORMS.items()])
def test_times_are_read_as_segments_iso_reader_reads_them(text: str, millis: int) -> None:
    parsed = timestamps.parse_iso(text)
    assert parsed is not None and parsed.tzinfo is UTC
    assert int(parsed.timestamp() * 1000) == millis


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",  # exist only outside UTC's years
    "2013-02-30", "2013-13-01T00:00:00Z", "2013-9-4", "2013-09-04X01:15", "string", "",
    "2024-05-01T10:00:00Z\n", " 2024-05-01T10:00:00Z", "2024-05-01T25:00:00Z", "2024-05-01T10:00:00+25:00",
    "2024-W18-3", "2024-122", "2024-05-01T10", "2024-05-01+02:00", "2024-05-01T10:00:00 +00:00", "1714557600",
])
def test_a_time_that_cannot_be_read_is_none_never_an_overflow(text: str) -> None:
    assert timestamps.parse_iso(text) is None


@pytest.mark.parametrize(("event", "field"), [
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
    ({"timestamp": "2024-05-01T10:00:00Z", "sentAt": "9999-12-31T23:59:59-01:00"}, "sentAt"),
    ({"originalTimestamp": "not a time"}, "originalTimestamp"),
    ({"timestamp": 1714557600}, "timestamp"),
    ({"timestamp": "0001-01-01T00:00:01Z", "sentAt": "9999-01-01T00:00:00Z", "receivedAt": "2024-05-01T10:00:00Z"},
     "timestamp"),  # the correction itself leaves the years a datetime holds
    ({"properties": {"when": {"at": "0001-01-01T00:00:00+01:00"}}}, "properties.when.at"),
])
def test_an_unreadable_time_anywhere_rejects_the_event_naming_it(event: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent, match=f"^{field}: "):
        mapped({"type": "track", "event": "E", "userId": "u", **event})


@pytest.mark.parametrize(("event", "created_at"), [
    # Segment's formula: timestamp = receivedAt - (sentAt - originalTimestamp)
    ({"timestamp": "2024-05-01T10:00:00Z", "sentAt": "2024-05-01T10:05:00Z", "receivedAt": "2024-05-01T12:00:00Z"},
     "2024-05-01T11:55:00+00:00"),
    ({"timestamp": "2024-05-01T10:00:00Z", "receivedAt": "2024-05-01T12:00:00Z"}, "2024-05-01T10:00:00+00:00"),
    ({"receivedAt": "2024-05-01T12:00:00Z"}, "2024-05-01T12:00:00+00:00"),  # no timestamp: Segment's receivedAt
    # already processed by Segment (its Webhooks destination): originalTimestamp is the device's time
    ({"originalTimestamp": "2024-05-01T10:00:00Z", "timestamp": "2024-05-01T11:55:00Z",
      "sentAt": "2024-05-01T10:05:00Z", "receivedAt": "2024-05-01T12:00:00Z"}, "2024-05-01T11:55:00+00:00"),
    ({"timestamp": "2024-05-01 10:00:00+00", "sentAt": "2024-05-01 09:00:00+00",
      "receivedAt": "2024-05-01T10:00:00Z"}, "2024-05-01T11:00:00+00:00"),  # a device an hour slow
])
def test_the_device_clock_is_corrected_with_sent_at(event: dict[str, Any], created_at: str) -> None:
    sent = body({"type": "track", "event": "E", "userId": "u", **event})
    assert sent["createdAt"] == int(datetime.fromisoformat(created_at).timestamp())


def test_a_batch_sent_at_and_the_daemons_received_at_are_stamped_on_each_event() -> None:
    event = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01T10:00:00Z"}
    stamped = timestamps.stamp(event, received_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
                               sent_at="2024-05-01T10:05:00Z", overwrite=True)
    assert stamped["receivedAt"] == "2024-05-01T12:00:00Z" and stamped["sentAt"] == "2024-05-01T10:05:00Z"
    assert body(stamped)["createdAt"] == int(datetime(2024, 5, 1, 11, 55, tzinfo=UTC).timestamp())
    own = timestamps.stamp({**event, "sentAt": "2024-05-01T10:01:00Z", "receivedAt": "2000-01-01T00:00:00Z"},
                           received_at=NOW, sent_at="2024-05-01T10:05:00Z", overwrite=False)
    assert own["sentAt"] == "2024-05-01T10:01:00Z" and own["receivedAt"] == "2000-01-01T00:00:00Z"


@pytest.mark.parametrize(("text", "millis"), [(k, v) for k, v in ISODATE_CASES.items() if "T" in k][:3])
def test_check_config_try_shows_the_corrected_timestamp(text: str, millis: int) -> None:
    event = {"type": "track", "event": "E", "userId": "u", "timestamp": text, "sentAt": text,
             "receivedAt": "2024-05-01T12:00:00Z"}
    notes = readings(validate({"messageId": "m", **event}), "events/track")
    assert notes == ["createdAt from timestamp 2024-05-01T12:00:00+00:00: receivedAt 2024-05-01T12:00:00+00:00 - "
                     f"(sentAt {timestamps.parse_iso(text).isoformat()} - originalTimestamp "  # type: ignore[union-attr]
                     f"{timestamps.parse_iso(text).isoformat()}) (device clock corrected)"]  # type: ignore[union-attr]


# -- Iterable's own times, inbound ------------------------------------------------------------------

@pytest.mark.parametrize(("value", "iso"), [
    ("2016-12-02 20:21:04 +00:00", "2016-12-02T20:21:04+00:00"),  # webhook samples (Iterable docs)
    ("2016-12-02 20:21:04 +0000", "2016-12-02T20:21:04+00:00"),
    ("2016-12-02 20:21:04.123 +00:00", "2016-12-02T20:21:04.123000+00:00"),  # Airbyte source cursor formats
    ("2016-12-02T20:21:04+00:00", "2016-12-02T20:21:04+00:00"),
    ("2016-12-02T20:21:04.5Z", "2016-12-02T20:21:04.500000+00:00"),
    ("2016-12-02 20:21:04", "2016-12-02T20:21:04+00:00"),  # export parameters: UTC without an offset
    ("2016-12-02 21:21:04 +01:00", "2016-12-02T20:21:04+00:00"),
    (1480710064, "2016-12-02T20:21:04+00:00"), (1480710064000, "2016-12-02T20:21:04+00:00"),
    ("1480710064000", "2016-12-02T20:21:04+00:00"),
])
def test_iterables_datetime_variants_are_read(value: Any, iso: str) -> None:
    assert timestamps.iterable_time(value) == datetime.fromisoformat(iso)


def webhook(created: Any) -> dict[str, Any]:
    return {"email": "a@example.com", "eventName": "emailOpen",
            "dataFields": {"campaignId": 1, "templateId": 2, "createdAt": created}}


@pytest.mark.parametrize("created", ["yesterday", "0001-01-01 00:00:00 +01:00", "2016-02-30 10:00:00 +00:00",
                                     True, {"at": 1}])
def test_an_unreadable_inbound_time_is_rejected_and_keeps_its_raw_text_in_the_key(created: Any) -> None:
    hook = inbound.validate(webhook(created))
    with pytest.raises(InvalidEvent, match=r"^dataFields\.createdAt: "):
        inbound.to_track(hook, event_names="segment", received_at=NOW)
    other = inbound.validate(webhook("another unreadable text"))
    assert inbound.inbound_key(hook) != inbound.inbound_key(other)  # two real events never merge
    assert inbound.inbound_key(hook) != inbound.inbound_key(inbound.validate(webhook(None)))


@pytest.mark.parametrize(("hook", "field"), [
    ({"email": "a@example.com\n"}, "email"), ({"email": "a@example.com", "userId": "u\x1f"}, "userId"),
    ({"dataFields": {"email": "a@example.com\r"}}, "dataFields.email"),
])
def test_an_inbound_identifier_with_a_control_character_is_refused(hook: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent, match=f"^{field}: contains a control character"):
        inbound.validate({"eventName": "emailOpen", **hook})


def test_an_inbound_event_without_a_time_takes_its_received_time() -> None:
    hook = inbound.validate({"email": "a@example.com", "eventName": "emailOpen", "dataFields": {}})
    assert inbound.to_track(hook, event_names="segment", received_at=NOW).timestamp == NOW


# -- 2. the integrations object ---------------------------------------------------------------------

@pytest.mark.parametrize(("integrations", "sent"), [
    ({"All": False, "Iterable": {}}, True),  # a settings object enables (the issue)
    ({"All": False, "Iterable": {"mergeNestedObjects": True}}, True),
    ({"All": False, "Iterable": True}, True),
    ({"All": False, "iterable": True}, True),  # keys without case
    ({"all": False, "ITERABLE": {}}, True),
    ({"All": False, "Iterable (Actions)": True}, True),  # the Actions destination's name
    ({"All": False}, False),
    ({"all": False}, False),
    ({"All": False, "Mixpanel": True}, False),
    ({"Iterable": False}, False),
    ({"iterable": False}, False),
    ({"All": True, "Iterable": False}, False),
    ({"Iterable": False, "iterable": True}, False),  # two spellings: a false wins
    ({"All": "false"}, True),  # facade: only a boolean All decides
    ({"All": True}, True),
    ({}, True),
    (None, True),
    ({"Iterable": None, "All": False}, True),  # facade: a non-boolean value enables
])
def test_the_integrations_object_as_segment_reads_it(integrations: Any, sent: bool) -> None:
    result = mapped({"type": "track", "event": "E", "userId": "u", "integrations": integrations})
    assert isinstance(result, IterableCall) is sent, result


def test_destination_settings_are_read_without_case() -> None:
    sent = body({"type": "identify", "userId": "u", "integrations": {"iterable": {"mergeNestedObjects": True}}})
    assert sent["mergeNestedObjects"] is True


# -- 3. semantic events and aliases ----------------------------------------------------------------

ORDER = {"total": 10, "products": [{"product_id": "p1", "name": "P", "price": 10}]}


@pytest.mark.parametrize(("name", "endpoint"), [
    ("Order Completed", "commerce/trackPurchase"), ("order completed", "commerce/trackPurchase"),
    ("order_completed", "commerce/trackPurchase"), ("ORDER COMPLETED", "commerce/trackPurchase"),
    ("Completed Order", "commerce/trackPurchase"), ("completed_order", "commerce/trackPurchase"),
    ("OrderCompleted", "commerce/trackPurchase"), (" Order  Completed ", "commerce/trackPurchase"),
    ("Product Added", "commerce/updateCart"), ("product_added", "commerce/updateCart"),
    ("Added Product", "commerce/updateCart"), ("Product Removed", "commerce/updateCart"),
    ("removed_product", "commerce/updateCart"), ("Cart Updated", "commerce/updateCart"),
    ("cart_updated", "commerce/updateCart"),
    ("Order Completed Twice", "events/track"), ("Orders Completed", "events/track"),
    ("Order-Completed", "events/track"), ("Product Viewed", "events/track"),
])
def test_spec_event_names_in_their_variants(name: str, endpoint: str) -> None:
    call = mapped({"type": "track", "event": name, "userId": "u", "properties": ORDER})
    assert isinstance(call, IterableCall) and call.endpoint == endpoint


@pytest.mark.parametrize(("properties", "order_id"), [
    ({"orderId": "ORD-1001"}, "ORD-1001"),  # the issue
    ({"order_id": "ORD-1"}, "ORD-1"),
    ({"id": "ORD-2"}, "ORD-2"),
    ({"order_id": 1001}, "1001"),
    ({"order_id": " ORD-3 "}, "ORD-3"),
    ({"order_id": "", "orderId": "ORD-4"}, "ORD-4"),
    ({"order_id": "ORD-5", "id": "other"}, "ORD-5"),
    ({}, "m-1"),  # no order id at all: the messageId keeps it idempotent
])
def test_the_order_id_through_segments_aliases(properties: dict[str, Any], order_id: str) -> None:
    sent = body({"type": "track", "event": "Order Completed", "userId": "u", "properties": {**ORDER, **properties}})
    assert sent["id"] == order_id


@pytest.mark.parametrize(("properties", "total"), [
    ({"total": 10}, 10.0), ({"total": "19.99"}, 19.99), ({"total": "$19.99"}, 19.99),  # facade's currency()
    ({"revenue": 12.5}, 12.5), ({"revenue": "$5"}, 5.0), ({"total": 0}, 0.0), ({"total": "1e2"}, 100.0),
    ({"total": 7, "revenue": 5}, 7.0),
])
def test_the_total_through_segments_aliases(properties: dict[str, Any], total: float) -> None:
    order = {"products": ORDER["products"], **properties}
    assert body({"type": "track", "event": "Order Completed", "userId": "u", "properties": order})["total"] == total


@pytest.mark.parametrize(("properties", "field"), [
    ({}, "properties.total"), ({"total": "ten"}, "properties.total"), ({"total": "19.99abc"}, "properties.total"),
    ({"revenue": "NaN"}, "properties.revenue"), ({"total": True}, "properties.total"),
    ({"total": "1_000"}, "properties.total"), ({"total": "$ 5"}, "properties.total"),
])
def test_a_total_that_cannot_be_read_is_refused_naming_it(properties: dict[str, Any], field: str) -> None:
    order = {"products": ORDER["products"], **properties}
    with pytest.raises(InvalidEvent, match=f"^{field}: "):
        mapped({"type": "track", "event": "Order Completed", "userId": "u", "properties": order})


@pytest.mark.parametrize(("product", "item"), [
    ({"product_id": "p", "name": "P", "price": 19.99}, {"id": "p", "price": 19.99, "quantity": 1}),
    ({"productId": "p", "name": "P", "price": "19.99"}, {"id": "p", "price": 19.99, "quantity": 1}),
    ({"id": "p", "name": "P", "price": 0, "quantity": "2"}, {"id": "p", "price": 0.0, "quantity": 2}),
    ({"product_id": 7, "name": "P", "price": 1, "quantity": 3.0}, {"id": "7", "price": 1.0, "quantity": 3}),
    ({"product_id": "p", "id": "q", "name": "P", "price": 1}, {"id": "p", "price": 1.0, "quantity": 1}),
])
def test_products_through_segments_aliases(product: dict[str, Any], item: dict[str, Any]) -> None:
    sent = body({"type": "track", "event": "Order Completed", "userId": "u",
                 "properties": {"total": 1, "products": [product]}})
    assert {k: sent["items"][0][k] for k in item} == item
    assert item_problem(sent["items"][0]) is None  # and the fake Iterable, by its own rules, takes it


@pytest.mark.parametrize(("product", "field"), [
    ({"product_id": "p", "name": "P", "price": "$19.99"}, "price"),  # the issue: never 0.0
    ({"product_id": "p", "name": "P"}, "price"),  # the issue: no price, never 0.0
    ({"product_id": "p", "name": "P", "price": None}, "price"),
    ({"product_id": "p", "name": "P", "price": "free"}, "price"),
    ({"product_id": "p", "name": "P", "price": [1]}, "price"),
    ({"product_id": "p", "name": "P", "price": 1, "quantity": "two"}, "quantity"),
    ({"product_id": "p", "name": "P", "price": 1, "quantity": 2.5}, "quantity"),
    ({"name": "P", "price": 1}, "product_id"),
    ({"product_id": "p", "price": 1}, "name"),
])
def test_a_product_value_that_cannot_be_read_is_refused_naming_its_path(product: dict[str, Any], field: str) -> None:
    for event in ("Order Completed", "Product Added"):
        with pytest.raises(InvalidEvent, match=rf"^properties\.products\[0\]\.{field}: "):
            mapped({"type": "track", "event": event, "userId": "u", "properties": {"total": 1, "products": [product]}})


def test_check_config_try_shows_the_alias_that_decided_each_field() -> None:
    event = validate({"messageId": "m", "type": "track", "event": "completed_order", "userId": "u",
                      "properties": {"orderId": "ORD-1", "revenue": 3, "products": [{"productId": "p", "name": "P",
                                                                                    "price": 3}]}})
    assert readings(event, "commerce/trackPurchase") == [
        "event 'completed_order' read as Segment's 'Order Completed'", "id from properties.orderId",
        "total from properties.revenue", "items[0].id from properties.products[0].productId"]


# -- 4. identifiers and emails -----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "ok"), [
    ("Jane.Doe+news@Example.com", True), ("a@b.co", True), ("o'brien@example.ie", True), ("jöhn@exämple.com", True),
    ("x@sub.domain.example.com", True), ("a@EXAMPLE.COM", True), ("a@example.中国", True), ("a@x.io", True),
    ("a@example.con", False), ("a@example.invalid", False), ("a@example.local", False),  # no such top-level domain
    ("a@b.co\n", False), ("not-an-email@", False), ("sayan", False), ("a@b", False), ("a@@b.co", False),
    ("a b@c.co", False), (".a@b.co", False), ("a..b@c.co", False), ("a@b.co.", False), ("a@-b.co", False),
    ("a@b.co\x00", False), (" a@b.co", False), ("a@[127.0.0.1]", False), ("@b.co", False),
    ("a" * 250 + "@b.co", False), (None, False), (5, False),
])
def test_an_email_is_what_iterable_takes_and_the_fake_agrees_by_its_own_rule(value: Any, ok: bool) -> None:
    assert is_email(value) is ok
    assert valid_email(value) is ok


@pytest.mark.parametrize("project_type", ["hybrid", "email", "userId"])
def test_a_padded_email_is_trimmed_not_dropped(project_type: str) -> None:
    event = {"type": "identify", "userId": "u1", "traits": {"email": " Jane.Doe+news@Example.com "}}
    sent = body(event, project_type=project_type)
    email = sent.get("email") or sent["dataFields"].get("email")
    assert email == "Jane.Doe+news@Example.com"


@pytest.mark.parametrize(("event", "field"), [
    ({"traits": {"email": "not-an-email@"}}, "traits.email"),  # the issue: never delivered without it
    ({"traits": {"email": "a@b.co\n"}}, "traits.email"),
    ({"traits": {"email": "a@b.co\x07"}}, "traits.email"),
    ({"traits": {"email": 42}}, "traits.email"),
    ({"userId": "u\n1"}, "userId"),
    ({"userId": "u\x001"}, "userId"),
    ({"anonymousId": "a\x1b"}, "anonymousId"),
])
def test_an_identifier_that_cannot_be_read_is_refused_naming_its_path(event: dict[str, Any], field: str) -> None:
    for project_type in ("hybrid", "email"):
        with pytest.raises(InvalidEvent, match=f"^{field}: "):
            mapped({"type": "identify", "userId": "u1", **event}, project_type=project_type)


def test_a_track_with_an_unreadable_email_property_is_refused() -> None:
    with pytest.raises(InvalidEvent, match=r"^properties\.email: not an email"):
        mapped({"type": "track", "event": "E", "userId": "u", "properties": {"email": "x@"}})
    assert email_problem(" a@b.co ") is None


# -- 5. device tokens by platform ---------------------------------------------------------------------

PUSH_APPS = {"": "app", "APNS": "ios-app", "APNS_SANDBOX": "ios-app", "GCM": "android-app"}


@pytest.mark.parametrize(("context", "apps", "endpoint", "platform"), [
    ({"device": {"type": "ios", "token": "t"}}, {}, None, "APNS"),  # the issue: no app -> skipped, never browser
    ({"device": {"type": "ios", "token": "t"}}, PUSH_APPS, "users/registerDeviceToken", "APNS"),
    ({"device": {"type": "android", "token": "t"}}, PUSH_APPS, "users/registerDeviceToken", "GCM"),
    ({"device": {"type": "android", "token": "t"}}, {}, None, "GCM"),
    ({"device": {"token": "t"}, "os": {"name": "iPadOS"}}, PUSH_APPS, "users/registerDeviceToken", "APNS"),
    ({"device": {"token": "t"}, "os": {"name": "Mac OS X"}}, PUSH_APPS, "users/registerDeviceToken", "APNS"),
    ({"device": {"token": "t"}, "os": {"name": "Android"}}, PUSH_APPS, "users/registerDeviceToken", "GCM"),
    ({"os": {"name": "Chrome", "token": "t"}}, {}, "users/registerBrowserToken", None),
    ({"device": {"type": "web", "token": "t"}}, {}, "users/registerBrowserToken", None),
    ({"device": {"token": "t"}, "os": {"name": "Firefox"}}, {}, "users/registerBrowserToken", None),
    ({"device": {"type": "windowsphone", "token": "t"}}, PUSH_APPS, None, "unknown"),
    ({"device": {"token": "t"}}, PUSH_APPS, None, "unknown"),
])
def test_device_tokens_by_platform(context: dict[str, Any], apps: dict[str, str], endpoint: str | None,
                                   platform: str | None) -> None:
    event = validate({"messageId": "m", "type": "identify", "userId": "u", "context": context})
    [token] = derived(event, Options(push_apps=apps), "u:u")
    if endpoint is None:
        assert token.call is None and token.skip is not None
        assert ("unknown platform" if platform == "unknown" else "application_name") in token.skip
        return
    assert token.call is not None and token.call.endpoint == endpoint
    if platform:
        assert token.call.body["device"]["platform"] == platform


# -- 6. stand-ins that can catch us -------------------------------------------------------------------

PRODUCT_READERS = {"sync.segment.spec", "sync.iterable.identifiers", "sync.segment.timestamps", "sync.segment.semantics", "sync.outbound.commerce",
                   "sync.outbound.mapper", "sync.inbound.mapper", "sync.people", "sync.wire"}


def test_the_fakes_never_import_the_products_validators_or_parsers() -> None:
    sandbox = Path(__file__).parents[3] / "sync" / "sandbox"
    for module in ("iterable.py", "iterable_project.py", "iterable_rules.py", "segment.py"):
        tree = ast.parse((sandbox / module).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & PRODUCT_READERS, (module, imported & PRODUCT_READERS)


@pytest.mark.parametrize(("item", "ok"), [
    ({"id": "p", "name": "P", "price": 1.5, "quantity": 1}, True),
    ({"id": "p", "name": "P", "price": "1.5", "quantity": 1}, False),
    ({"id": "p", "name": "P", "price": 1, "quantity": 1.5}, False),
    ({"id": "p", "name": "P", "price": True, "quantity": 1}, False),
    ({"id": "p", "price": 1, "quantity": 1}, False),
])
def test_the_fake_iterable_refuses_items_iterable_refuses(item: dict[str, Any], ok: bool) -> None:
    assert (item_problem(item) is None) is ok


def test_semantic_reader_is_a_pure_table() -> None:
    assert semantic.spec_event("completed order") == "Order Completed"
    assert semantic.opted_out({"ALL": False}) == "integrations.ALL is false and Iterable is not enabled"


def test_check_config_try_prints_the_time_and_the_aliases_under_the_request() -> None:
    from sync.config import parse
    from sync.engine.explain import decide, describe

    def config() -> Any:
        return parse({"iterable": {"api_key": "k"}, "segment": {"write_key": "w"},
                      "outbound": {"write_keys": ["x"]}, "inbound": {"auth_tokens": ["t"]}}, {})

    event = {"type": "track", "event": "Order Completed", "userId": "u", "timestamp": "2026-06-01T09:00:00Z",
             "sentAt": "2026-06-01T09:30:00Z",
             "properties": {"orderId": "ORD-1001", "total": 5, "products": [{"id": "p", "name": "P", "price": 5}]}}
    text = describe(decide(config(), event, "outbound", None, NOW, arriving=True))
    assert text.startswith("POST /api/commerce/trackPurchase")
    assert text.endswith(
        "createdAt from timestamp 2026-03-01T11:30:00+00:00: receivedAt 2026-03-01T12:00:00+00:00 - (sentAt "
        "2026-06-01T09:30:00+00:00 - originalTimestamp 2026-06-01T09:00:00+00:00) (device clock corrected)\n"
        "id from properties.orderId\ntotal from properties.total\nitems[0].id from properties.products[0].id")
    remapped = decide(config(), {**event, "messageId": "m"}, "outbound", None, NOW)  # a stored row: no receivedAt
    assert remapped.mapped is not None and remapped.mapped["body"]["createdAt"] == 1780304400


@pytest.mark.parametrize(("message", "dropped"), [
    ({"type": "track", "event": "E", "userId": "u", "timestamp": "2024-05-01T10:00:00+00:00"}, False),
    ({"type": "track", "event": "E", "anonymousId": "a@example.com"}, False),
    ({"type": "track", "event": "E"}, True),  # Segment requires userId or anonymousId
    ({"type": "track", "userId": "u"}, True),
    ({"type": "nope", "userId": "u"}, True),
    ({"type": "track", "event": "E", "userId": "u", "timestamp": "yesterday"}, True),
])
def test_the_fake_segment_drops_what_segment_drops_by_its_own_rules(message: dict[str, Any], dropped: bool) -> None:
    from sync.sandbox.segment import message_problem

    assert (message_problem(message) is not None) is dropped
