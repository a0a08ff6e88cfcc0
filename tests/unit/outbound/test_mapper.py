"""SPEC section 5, row by row, plus properties that hold for any Segment-shaped input."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.errors import InvalidEvent
from sync.mapping.rules import Identity, OutboundMapping
from sync.outbound.mapper import (
    IterableCall,
    Options,
    Skip,
    identities,
    map_event,
    named,
    raw_ids,
    user_key,
)
from sync.segment.spec import iterable_dates, validate

HYBRID = Options()
TS = "2026-03-04T05:06:07.890Z"
TS_UNIX = 1772600767


def mapped(event: dict[str, Any], options: Options = HYBRID) -> IterableCall | Skip:
    return map_event(validate({"messageId": "mid-1", **event}), options)


def call(event: dict[str, Any], options: Options = HYBRID) -> IterableCall:
    result = mapped(event, options)
    assert isinstance(result, IterableCall), result
    return result


def test_identify_becomes_users_update_with_converted_traits() -> None:
    result = call({"type": "identify", "userId": "u1", "traits": {
        "email": "ann@example.com", "phone": "+15551234567", "signedUpAt": "2026-01-02T03:04:05+02:00",
        "birthday": "1990-05-06", "address": {"city": "Oslo", "since": "2020-01-01T00:00:00Z"}}})
    assert result.endpoint == "users/update" and result.user_key == "u1"
    assert result.body == {  # hybrid: named by userId; the email is set (or changed) through dataFields.email
        "userId": "u1", "preferUserId": True, "mergeNestedObjects": False,
        "dataFields": {"phoneNumber": "+15551234567", "signedUpAt": "2026-01-02 01:04:05 +00:00",
                       "birthday": "1990-05-06", "address": {"city": "Oslo", "since": "2020-01-01 00:00:00 +00:00"},
                       "email": "ann@example.com"},
    }


@pytest.mark.parametrize(("project_type", "expected"), [
    ("email", {"email": "ann@example.com", "userId": "u1", "dataFields": {"plan": "pro"}}),
    ("userId", {"userId": "u1", "preferUserId": True, "dataFields": {"plan": "pro", "email": "ann@example.com"}}),
    ("hybrid", {"userId": "u1", "preferUserId": True, "dataFields": {"plan": "pro", "email": "ann@example.com"}}),
])
def test_identify_names_the_person_as_the_project_type_requires(project_type: str,
                                                                expected: dict[str, Any]) -> None:
    """Iterable takes an email or a userId, not both; userId and hybrid projects change email via dataFields."""
    result = call({"type": "identify", "userId": "u1", "traits": {"email": "ann@example.com", "plan": "pro"}},
                  Options(project_type=project_type))
    assert result.body == {**expected, "mergeNestedObjects": False}


@pytest.mark.parametrize(("project_type", "expected"), [
    ("email", "users/updateEmail"), ("hybrid", "users/updateEmail"),
    ("userId", "alias is not sent in a userId-based project"),
])
def test_alias_follows_the_project_type(project_type: str, expected: str) -> None:
    result = mapped({"type": "alias", "previousId": "old@example.com", "userId": "new@example.com"},
                    Options(project_type=project_type))
    if isinstance(result, Skip):
        assert expected in result.reason
    else:
        assert result.endpoint == expected and result.body == {"currentEmail": "old@example.com",
                                                                "newEmail": "new@example.com"}


@pytest.mark.parametrize(("integrations", "config", "expected"), [
    ({}, False, False), ({}, True, True),
    ({"Iterable": {"mergeNestedObjects": True}}, False, True),
    ({"Iterable": {"mergeNestedObjects": False}}, True, False),
])
def test_merge_nested_objects_follows_integrations_then_config(integrations: dict[str, Any], config: bool,
                                                                expected: bool) -> None:
    result = call({"type": "identify", "userId": "u1", "integrations": integrations},
                  Options(merge_nested_objects=config))
    assert result.body["mergeNestedObjects"] is expected


def test_track_becomes_events_track_with_id_created_at_and_campaign() -> None:
    result = call({"type": "track", "event": "Played", "userId": "u1", "timestamp": TS,
                   "context": {"traits": {"email": "ann@example.com"}},
                   "properties": {"song": "x", "at": TS, "campaignId": 12, "templateId": "34", "bad": True}})
    assert result.endpoint == "events/track"
    assert result.body == {"userId": "u1", "eventName": "Played", "id": "mid-1",
                           "createdAt": TS_UNIX, "campaignId": 12, "templateId": 34,
                           "dataFields": {"song": "x", "at": "2026-03-04 05:06:07 +00:00", "campaignId": 12,
                                          "templateId": "34", "bad": True}}


def test_properties_email_wins_over_context_traits() -> None:
    result = call({"type": "track", "event": "E", "properties": {"email": "p@example.com"},
                   "context": {"traits": {"email": "c@example.com"}}})
    assert result.body["email"] == "p@example.com" and "userId" not in result.body


def test_email_falls_back_to_an_email_shaped_user_id() -> None:
    email_project = Options(project_type="email")
    assert call({"type": "track", "event": "E", "userId": "ann@example.com"}, email_project).body["email"] == \
        "ann@example.com"
    assert call({"type": "track", "event": "E", "userId": "ann@example.com"}).body["userId"] == "ann@example.com"
    assert "email" not in call({"type": "track", "event": "E", "userId": "ann"}).body


def test_order_completed_becomes_track_purchase() -> None:
    result = call({"type": "track", "event": "Order Completed", "userId": "u1", "timestamp": TS,
                   "context": {"traits": {"email": "ann@example.com", "phone": "+1555"}},
                   "properties": {"order_id": "o-9", "total": "30.5", "currency": "EUR", "campaignId": 5,
                                  "products": [{"product_id": "p1", "sku": "S1", "name": "Shoe", "price": 10.25,
                                                "quantity": "2", "category": "Shoes", "url": "https://x/p1",
                                                "image_url": "https://x/p1.png", "color": "red"}]}})
    assert result.endpoint == "commerce/trackPurchase"
    assert result.body == {
        "id": "o-9", "total": 30.5, "createdAt": TS_UNIX, "campaignId": 5,
        "user": {"userId": "u1", "preferUserId": True, "mergeNestedObjects": False,
                 "dataFields": {"phoneNumber": "+1555"}},
        "items": [{"id": "p1", "sku": "S1", "name": "Shoe", "price": 10.25, "quantity": 2, "categories": ["Shoes"],
                   "url": "https://x/p1", "imageUrl": "https://x/p1.png", "dataFields": {"color": "red"}}],
        "dataFields": {"order_id": "o-9", "currency": "EUR"},
    }


@pytest.mark.parametrize(("properties", "field"), [
    ({"order_id": "o"}, "properties.total"), ({"order_id": "o", "total": "lots"}, "properties.total"),
    ({"order_id": "o", "total": 5, "products": [{"name": "x"}]}, "properties.products[0].product_id"),
    # a value that is not what the spec says is refused naming it, never sent as no items or no category
    ({"order_id": "o", "total": 5, "products": "abc"}, "properties.products"),
    ({"order_id": "o", "total": 5, "products": {"a": 1}}, "properties.products"),
    ({"order_id": "o", "total": 5, "products": [{"id": "p", "name": "n", "price": 1, "category": {"a": 1}}]},
     "properties.products[0].category"),
    ({"order_id": "o", "total": 5, "products": [{"id": "p", "name": "n", "price": 1, "category": ["A", None]}]},
     "properties.products[0].category[1]"),
])
def test_order_completed_without_required_fields_is_rejected_naming_them(properties: dict[str, Any],
                                                                         field: str) -> None:
    with pytest.raises(InvalidEvent, match=field.replace("[", r"\[").replace("]", r"\]")):
        mapped({"type": "track", "event": "Order Completed", "userId": "u1", "properties": properties})


@pytest.mark.parametrize("name", ["Product Added", "Product Removed", "Cart Updated"])
def test_cart_events_with_products_become_update_cart(name: str) -> None:
    result = call({"type": "track", "event": name, "userId": "u1",
                   "properties": {"products": [{"id": "p1", "name": "A", "price": 1, "quantity": 3}]}})
    assert result.endpoint == "commerce/updateCart"
    assert result.body["items"] == [{"id": "p1", "name": "A", "price": 1.0, "quantity": 3}]
    assert result.body["user"]["userId"] == "u1"


def test_cart_events_without_products_are_generic_tracks() -> None:
    assert call({"type": "track", "event": "Product Added", "userId": "u1",
                 "properties": {"product_id": "p"}}).endpoint == "events/track"


@pytest.mark.parametrize(("event", "name"), [
    ({"type": "page", "name": "Pricing"}, "Pricing page"), ({"type": "page"}, "Loaded a Page"),
    ({"type": "screen", "name": "Home"}, "Home screen"), ({"type": "screen"}, "Loaded a Screen"),
])
def test_page_and_screen_become_named_tracks(event: dict[str, Any], name: str) -> None:
    result = call({**event, "userId": "u1", "context": {"page": {"path": "/p", "title": "T"}},
                   "properties": {"url": "https://x/p"}})
    assert result.endpoint == "events/track" and result.body["eventName"] == name
    if event["type"] == "page":
        assert result.body["dataFields"]["path"] == "/p" and result.body["dataFields"]["url"] == "https://x/p"


def test_alias_between_emails_becomes_update_email() -> None:
    result = call({"type": "alias", "previousId": "old@example.com", "userId": "new@example.com"})
    assert (result.endpoint, result.body) == ("users/updateEmail",
                                             {"currentEmail": "old@example.com", "newEmail": "new@example.com"})


@pytest.mark.parametrize(("event", "reason"), [
    ({"type": "alias", "previousId": "anon-1", "userId": "u1"}, "alias needs previousId and userId"),
    ({"type": "group", "userId": "u1", "groupId": "g"}, "group is not supported by Iterable"),
    ({"type": "track", "event": "E", "anonymousId": "a1"}, "no email or userId"),
    ({"type": "track", "event": "E", "userId": "u1", "integrations": {"Iterable": False}}, "integrations.Iterable"),
    ({"type": "track", "event": "E", "userId": "u1", "integrations": {"All": False}}, "integrations.All"),
    ({"type": "track", "event": "E", "userId": "u1", "context": {"integration": {"name": "iterable"}}},
     "loop guard"),
])
def test_skipped_events_keep_their_reason(event: dict[str, Any], reason: str) -> None:
    result = mapped(event)
    assert isinstance(result, Skip) and reason in result.reason


@pytest.mark.parametrize(("deletion", "project_type", "event", "expected"), [
    ("delete", "hybrid", {"userId": "u 1/x"}, ("DELETE", "users/byUserId/u%201%2Fx", {})),
    ("delete", "email", {"userId": "ann@x.io"}, ("DELETE", "users/byUserId/ann%40x.io", {})),
    # dot-segments: "users/byUserId/.." was normalised to "users/", a 404 taken for the deletion done
    ("delete", "hybrid", {"userId": ".."}, ("DELETE", "users/byUserId/%2E%2E", {})),
    ("delete", "hybrid", {"userId": "."}, ("DELETE", "users/byUserId/%2E", {})),
    ("delete", "hybrid", {"userId": "a..b"}, ("DELETE", "users/byUserId/a..b", {})),
    ("forget", "hybrid", {"userId": "u1"}, ("POST", "users/forget", {"userId": "u1"})),
    ("forget", "email", {"userId": "ann@x.io"}, ("POST", "users/forget", {"email": "ann@x.io"})),
    ("forget", "email", {"userId": "u1"}, "forget needs the email"),
    ("skip", "hybrid", {"userId": "u1"}, "not forwarded"),
])
def test_a_deletion_request_by_mode_and_project_type(deletion: str, project_type: str, event: dict[str, Any],
                                                     expected: Any) -> None:
    result = mapped({"type": "delete", **event}, Options(project_type=project_type, deletion=deletion))
    if isinstance(expected, str):
        assert isinstance(result, Skip) and expected in result.reason
    else:
        assert isinstance(result, IterableCall) and (result.method, result.endpoint, result.body) == expected


def test_all_false_with_iterable_true_is_sent() -> None:
    assert isinstance(mapped({"type": "track", "event": "E", "userId": "u",
                              "integrations": {"All": False, "Iterable": True}}), IterableCall)


def test_project_type_decides_which_identifier_is_required() -> None:
    email_only = {"type": "track", "event": "E", "properties": {"email": "a@example.com"}}
    assert isinstance(mapped(email_only, Options(project_type="userId")), Skip)
    assert isinstance(mapped({"type": "track", "event": "E", "userId": "u"}, Options(project_type="email")), Skip)
    assert "preferUserId" not in call({"type": "identify", "userId": "u", "traits": {"email": "a@example.com"}},
                                      Options(project_type="email")).body


@pytest.mark.parametrize(("event", "field"), [
    ({"type": "track"}, "event"), ({"type": "bogus"}, "type"), ({"type": "track", "event": "E", "properties": []},
                                                                "properties"),
    ({"type": "track", "event": "E", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "track", "event": "E", "messageId": "x" * 101}, "messageId"),
    ({"type": "track", "event": "E", "properties": {"blob": "x" * 40000}}, "32 KB"),
])
def test_invalid_events_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEvent, match=field):
        validate(event)


def test_dates_convert_but_date_only_and_non_dates_stay() -> None:
    assert iterable_dates({"b": "2026-02-03", "c": "not 2026-13-01", "d": ["2026-01-01T10:00:00-05:00"],
                           "e": "2026-02-30 10:00 stand-up", "f": "2026-01-01T10:00:00Z\n"}) == {
        "b": "2026-02-03", "c": "not 2026-13-01", "d": ["2026-01-01 15:00:00 +00:00"],
        "e": "2026-02-30 10:00 stand-up", "f": "2026-01-01T10:00:00Z\n"}


@pytest.mark.parametrize(("value", "path"), [
    ({"a": "2026-02-30T00:00:00Z"}, "properties.a"),
    ({"c": "2026-13-01T00:00:00Z"}, "properties.c"),
    ({"d": [1, {"e": "0001-01-01T00:00:00+01:00"}]}, r"properties.d\[1\].e"),
])
def test_a_date_time_that_cannot_be_read_is_refused_naming_its_path(value: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidEvent, match=f"^{path}: not a time"):
        iterable_dates(value, "properties")


# -- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "a@b.co"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
segment_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "delete"])},
    optional={
        "event": st.sampled_from(["Order Completed", "Product Added", "Cart Updated", "Played", ""]) | st.text(),
        "userId": st.none() | st.sampled_from(["u1", "ann@example.com", ""]) | st.integers() | st.text(max_size=60),
        "anonymousId": st.text(max_size=10), "previousId": st.sampled_from(["old@example.com", "x"]),
        "name": st.text(max_size=10) | st.none(),
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "bad", None]),
        "properties": st.dictionaries(st.sampled_from(["email", "total", "order_id", "products", "campaignId", "x"]),
                                      json_values, max_size=5),
        "traits": st.dictionaries(st.sampled_from(["email", "phone", "created", "y"]), json_values, max_size=4),
        "context": st.dictionaries(st.sampled_from(["traits", "integration", "page"]), json_values, max_size=3),
        "integrations": st.dictionaries(st.sampled_from(["All", "Iterable"]), json_values, max_size=2),
        "messageId": st.text(min_size=1, max_size=30),
    },
)

SCHEMA_FIELDS = {
    "users/update": {"email", "userId", "dataFields", "preferUserId", "mergeNestedObjects"},
    "events/track": {"email", "userId", "eventName", "id", "createdAt", "dataFields", "campaignId", "templateId"},
    "commerce/trackPurchase": {"id", "user", "items", "total", "createdAt", "dataFields", "campaignId", "templateId"},
    "commerce/updateCart": {"user", "items"},
    "users/updateEmail": {"currentEmail", "newEmail"},
    "users/forget": {"email", "userId"},
}


@settings(max_examples=300, deadline=None)
@given(segment_events, st.sampled_from(["email", "userId", "hybrid"]))
def test_mapper_never_raises_unexpectedly_is_deterministic_and_fits_the_schema(event: dict[str, Any],
                                                                              project: str) -> None:
    options = Options(project_type=project)
    try:
        valid = validate(event)
        first = map_event(valid, options)
    except InvalidEvent:
        return
    assert map_event(valid, options) == first
    if isinstance(first, Skip):
        assert first.reason
        return
    body = first.body
    if first.method == "DELETE":  # a deletion names the user in its path and sends no body
        assert first.endpoint.startswith(("users/byUserId/", "users/")) and body == {}
        return
    assert set(body) <= SCHEMA_FIELDS[first.endpoint]
    user = body.get("user", body)
    if first.endpoint != "users/updateEmail":
        assert user.get("email") or user.get("userId")
    if first.endpoint == "events/track":
        assert isinstance(body["eventName"], str) and body["eventName"] and isinstance(body["id"], str)
        assert isinstance(body.get("createdAt", 0), int)
    for item in body.get("items", []):
        assert {"id", "name", "price", "quantity"} <= set(item)
        assert isinstance(item["price"], float) and isinstance(item["quantity"], int)
    for key in ("campaignId", "templateId"):
        assert isinstance(body.get(key, 0), int)


def test_order_completed_without_order_id_is_sent_with_the_message_id_as_purchase_id() -> None:
    """Issue 10 item 11: SPEC requires only ``total``; Iterable's purchase ``id`` is optional."""
    result = call({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "msg-77",
                   "properties": {"total": 5}})
    assert result.endpoint == "commerce/trackPurchase" and result.body["id"] == "msg-77"
    again = call({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "msg-77",
                  "properties": {"total": 5}})
    assert again.body == result.body  # a retry is the same purchase


def test_a_null_phone_clears_phone_number() -> None:
    """Issue 10 item 11: null is how Segment's destination clears ``phoneNumber`` in Iterable."""
    result = call({"type": "identify", "userId": "u1", "traits": {"phone": None, "plan": "pro"}})
    assert result.body["dataFields"] == {"phoneNumber": None, "plan": "pro"}


IDENTITIES = [Identity(), Identity(email_paths=("properties.contact", "traits.email"), email_from_user_id=False,
                                   user_id_paths=("context.traits.user_id", "userId"))]


@settings(max_examples=300, deadline=None)
@given(segment_events, st.sampled_from(["email", "userId", "hybrid"]), st.sampled_from(IDENTITIES))
def test_who_an_event_names_is_read_once_with_the_same_answers(event: dict[str, Any], project: str,
                                                               identity: Identity) -> None:
    """Issue 20: intake reads the people an event names once (``named``) and hands them to the mapper and the
    companions; that reading agrees with ``user_key``/``identities`` and the mapping with ``map_event`` alone."""
    options = Options(project_type=project, mapping=OutboundMapping(identity=identity))
    try:
        valid = validate(event)
    except InvalidEvent:
        return
    who = named(valid, identity)
    assert who.user_key == user_key(valid, identity) and who.identities == identities(valid, identity)
    assert who.ids == raw_ids(valid, identity)
    try:
        alone = map_event(valid, options)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent, match=f"^{re.escape(str(exc))}$"):
            map_event(valid, options, who)
        return
    assert map_event(valid, options, who) == alone


@pytest.mark.parametrize(("category", "categories"), [
    ("Shoes", ["Shoes"]), (["Shoes", "Sale"], ["Shoes", "Sale"]), (7, ["7"]), ([" Shoes ", "", 3.5], ["Shoes", "3.5"]),
    ("", None), ([], None),
])
def test_a_product_category_becomes_iterable_categories(category: Any, categories: list[str] | None) -> None:
    """A list of categories (some sources send one) and a numeric category were dropped without a word."""
    product = {"id": "p", "name": "n", "price": 1, "category": category}
    result = call({"type": "track", "event": "Order Completed", "userId": "u1",
                   "properties": {"order_id": "o", "total": 1, "products": [product]}})
    assert result.body["items"][0].get("categories") == categories
    assert "category" not in result.body["items"][0].get("dataFields", {})


def test_a_cart_event_whose_products_are_not_a_list_is_refused_and_without_products_is_an_event() -> None:
    with pytest.raises(InvalidEvent, match="properties.products: expected an array"):
        mapped({"type": "track", "event": "Cart Updated", "userId": "u1", "properties": {"products": "abc"}})
    plain = call({"type": "track", "event": "Cart Updated", "userId": "u1", "properties": {"products": None}})
    assert plain.endpoint == "events/track"  # not an updateCart that would empty the cart


# -- ids and names that are numbers, or neither text nor a number (a fresh-eyes review) --------------------------

@pytest.mark.parametrize(("user_id", "sent"), [
    # JavaScript's String(n) (ECMA-262 Number::toString), as Segment's libraries and pipeline write a number:
    # a Java or Kotlin client sending the id 12345 as the double 12345.0 names the same person
    (12345, "12345"), (12345.0, "12345"), (1e20, "100000000000000000000"), (1.2345678901234568e20,
                                                                              "123456789012345680000"),
    (1e21, "1e+21"), (1.5e-6, "0.0000015"), (1e-7, "1e-7"), (-2.5, "-2.5"), (0.1, "0.1"), (-0.0, "0"),
])
def test_a_numeric_user_id_is_written_as_javascript_writes_it(user_id: float, sent: str) -> None:
    body = call({"type": "track", "event": "Played", "userId": user_id}).body
    assert body["userId"] == sent


@pytest.mark.parametrize("field", ["userId", "anonymousId", "previousId"])
@pytest.mark.parametrize(("value", "named_as"), [
    (True, "a boolean"), (False, "a boolean"), ({"id": 1}, "an object"), (["a"], "an array"),
])
def test_an_id_that_is_neither_text_nor_a_number_is_refused_naming_it(field: str, value: Any, named_as: str) -> None:
    """It was read as absent: the event got 200 and was skipped as "no email or userId"."""
    with pytest.raises(InvalidEvent, match=f"^{field}: expected a string \\(or a number\\), got {named_as}$"):
        validate({"type": "track", "event": "Played", "messageId": "m", "userId": "u1", field: value})


@pytest.mark.parametrize(("event", "name"), [
    ({"type": "page", "name": 42}, "42 page"), ({"type": "screen", "name": 7.0}, "7 screen"),
    ({"type": "page", "properties": {"name": 3}}, "3 page"),
])
def test_a_page_named_by_a_number_keeps_its_name(event: dict[str, Any], name: str) -> None:
    """Its name was dropped: sent as "Loaded a Page" with nothing naming it."""
    result = call({**event, "userId": "u1"})
    assert result.body["eventName"] == name
    if event["type"] == "page" and "name" in event:
        assert result.body["dataFields"]["name"] == event["name"]


@pytest.mark.parametrize("name", ["Order Completed", "order_completed", "ORDER COMPLETED", "Completed Order"])
def test_a_rule_for_a_spec_event_holds_for_its_variants(name: str) -> None:
    """A fresh-eyes review: a rule routing "Order Completed" to a plain track held for that spelling only; the
    variants Segment reads as the same event still went to commerce/trackPurchase."""
    from sync.mapping.rules import EventRule, OutboundMapping

    rules = OutboundMapping(events={"Order Completed": EventRule(call="track", name="Order Completed (legacy)")})
    result = call({"type": "track", "event": name, "userId": "u1", "properties": {"total": 5}},
                  Options(mapping=rules))
    assert result.endpoint == "events/track" and result.body["eventName"] == "Order Completed (legacy)"


def test_a_missing_type_is_named_as_missing_and_a_webhook_is_pointed_to_its_route() -> None:
    """A fresh-eyes walk: a missing type was reported as "got 'None'", and an Iterable webhook tried as a Segment
    event gave no hint."""
    with pytest.raises(InvalidEvent, match=r"got nothing \(an Iterable webhook\? .*--direction inbound\)$"):
        validate({"email": "a@b.co", "eventName": "emailOpen", "dataFields": {}})
    with pytest.raises(InvalidEvent, match=r"got nothing$"):
        validate({"userId": "u"})
    with pytest.raises(InvalidEvent, match=r"got 'Track'$"):
        validate({"type": "Track", "userId": "u"})


@pytest.mark.parametrize(("traits", "field"), [
    ({"emailListIds": 123}, "traits.emailListIds"), ({"unsubscribedChannelIds": "4,5"}, "traits.unsubscribedChannelIds"),
    ({"emailListIds": ["123", "abc"]}, r"traits.emailListIds\[0\]"), ({"emailListIds": [1.5]}, r"traits.emailListIds\[0\]"),
    ({"subscribedMessageTypeIds": [1, True]}, r"traits.subscribedMessageTypeIds\[1\]"),
])
def test_subscription_traits_iterable_cannot_take_are_refused_naming_them(traits: dict[str, Any], field: str) -> None:
    """A review of subscriptions: a number or a text was dropped without a word (200, nothing sent); a list of
    texts or floats went out and came back dead-lettered as "invalidUserIds". Iterable takes arrays of int64."""
    with pytest.raises(InvalidEvent, match=f"^{field}: expected"):
        mapped({"type": "identify", "userId": "s2", "traits": traits})


def test_subscription_traits_stay_out_of_a_purchases_user_fields() -> None:
    """Written as profile fields they change subscriptions without Iterable's subscribe events."""
    body = call({"type": "track", "event": "Order Completed", "userId": "u1",
                 "properties": {"total": 5, "products": []},
                 "context": {"traits": {"emailListIds": [99], "plan": "x"}}}).body
    assert body["user"]["dataFields"] == {"plan": "x"}


def test_item_fields_that_are_not_text_are_kept_not_dropped() -> None:
    """A review of commerce: a numeric sku, an id beside product_id, a numeric description and a list of image
    URLs vanished from the item (neither the item's field nor its dataFields)."""
    body = call({"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 5, "products": [
        {"product_id": "p1", "id": "variant-9", "sku": 12345, "name": "Shoe", "price": 0, "quantity": 2,
         "description": 5, "image_url": ["a", "b"]}]}}).body
    [item] = body["items"]
    assert item["id"] == "p1" and item["sku"] == "12345"
    assert item["dataFields"] == {"id": "variant-9", "description": 5, "image_url": ["a", "b"]}


def test_a_purchase_id_longer_than_iterable_takes_is_refused_naming_it() -> None:
    with pytest.raises(InvalidEvent, match=r"^properties.order_id: longer than the 512 bytes"):
        mapped({"type": "track", "event": "Order Completed", "userId": "u1",
                "properties": {"total": 5, "order_id": "o" * 513}})
    assert call({"type": "track", "event": "Order Completed", "userId": "u1",
                 "properties": {"total": 5, "order_id": "o" * 512}}).body["id"] == "o" * 512
