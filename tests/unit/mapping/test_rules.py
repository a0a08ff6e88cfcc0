"""The mapping a team can shape (issue 11): one case per key, every validation message, the recipes, and
properties that hold for any config that passes validation."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import Config, parse
from sync.engine.explain import decide, describe
from sync.engine.intake import outbound_options
from sync.errors import ConfigError, InvalidEvent
from sync.inbound.mapper import to_track
from sync.mapping.rules import digest
from sync.model import Status
from sync.outbound.mapper import IterableCall, Skip, map_event
from sync.sandbox.demo import merged
from sync.segment.spec import validate

CREDENTIALS: dict[str, Any] = {"iterable": {"api_key": "k"}, "segment": {"write_key": "w"},
                               "outbound": {"write_keys": ["x"]}, "inbound": {"auth_tokens": ["t"]}}
RECIPES = Path(__file__).resolve().parents[3] / "sync" / "sandbox" / "recipes"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def config(toml: str = "") -> Config:
    return parse(merged(CREDENTIALS, tomllib.loads(toml)), {})


def problems(toml: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(toml)
    return caught.value.problems


def out(toml: str, event: dict[str, Any]) -> IterableCall | Skip:
    return map_event(validate({"messageId": "m-1", "userId": "u1", **event}), outbound_options(config(toml)))


def body(toml: str, event: dict[str, Any]) -> dict[str, Any]:
    result = out(toml, event)
    assert isinstance(result, IterableCall), result
    return result.body


def skipped(toml: str, event: dict[str, Any]) -> str:
    result = out(toml, event)
    assert isinstance(result, Skip), result
    return result.key


TRACK = {"type": "track", "event": "Played", "properties": {"song": "x", "card_number": "4111", "plan": "a"}}


# -- one case per key: outbound ----------------------------------------------------------------


def test_no_keys_is_exactly_the_spec_mapping() -> None:
    assert body("", TRACK) == {"userId": "u1", "eventName": "Played", "id": "m-1",
                               "dataFields": {"song": "x", "card_number": "4111", "plan": "a"}}


@pytest.mark.parametrize(("toml", "event", "expected"), [
    ('[outbound.identity]\nemail_paths = ["properties.contact"]',
     {"type": "track", "event": "E", "userId": None, "properties": {"contact": "c@x.io", "email": "p@x.io"}},
     {"email": "c@x.io"}),
    ('[outbound.identity]\nuser_id_paths = ["context.traits.user_id", "userId"]',
     {"type": "track", "event": "E", "context": {"traits": {"user_id": "deep"}}}, {"userId": "deep"}),
    ('[iterable]\nproject_type = "email"\n[outbound.identity]\nemail_from_user_id = false',
     {"type": "track", "event": "E", "userId": "ann@x.io"}, None),
])
def test_identity_paths(toml: str, event: dict[str, Any], expected: dict[str, Any] | None) -> None:
    result = out(toml, event)
    if expected is None:
        assert isinstance(result, Skip) and result.key == "no identifier"
    else:
        assert isinstance(result, IterableCall) and expected.items() <= result.body.items()


@pytest.mark.parametrize(("toml", "event", "key"), [
    ('[outbound.filter]\ntypes = ["identify", "track"]', {"type": "page", "name": "Home"}, "outbound.filter.types"),
    ('[outbound.filter]\nallow = ["Checkout *"]', TRACK, "outbound.filter.allow"),
    ('[outbound.filter]\ndeny = ["Play*"]', TRACK, "outbound.filter.deny"),
    ('[outbound.filter]\nallow = ["Play*"]\ndeny = ["Played"]', TRACK, "outbound.filter.deny"),
    ('[outbound.filter]\ndrop_if = [{ path = "properties.card_number", exists = true }]', TRACK,
     "outbound.filter.drop_if"),
    ('[outbound.filter]\ndrop_if = [{ path = "properties.plan", equals = "a" }]', TRACK, "outbound.filter.drop_if"),
    ('[outbound.filter]\ndrop_if = [{ path = "context.traits.email", glob = "*@shop.example" }]',
     {**TRACK, "context": {"traits": {"email": "staff@shop.example"}}}, "outbound.filter.drop_if"),
    ('[outbound.pages]\nsend = "named"', {"type": "page"}, "outbound.pages.send"),
    ('[outbound.pages]\nsend = "categorized"', {"type": "page", "name": "Home"}, "outbound.pages.send"),
    ('[outbound.pages]\nsend = "none"', {"type": "page", "name": "Home", "category": "Docs"}, "outbound.pages.send"),
    ('[outbound.screens]\nsend = "named"', {"type": "screen"}, "outbound.screens.send"),
    ("", {**TRACK, "integrations": {"Iterable": False}}, "integrations"),
])
def test_filters_skip_naming_the_key_that_decided(toml: str, event: dict[str, Any], key: str) -> None:
    assert skipped(toml, event) == key


def test_filters_let_through_what_they_do_not_name() -> None:
    assert body('[outbound.filter]\nallow = ["Play*"]\ndeny = ["Internal *"]', TRACK)["eventName"] == "Played"
    assert body('[outbound.filter]\ndrop_if = [{ path = "properties.plan", equals = 1 }]', TRACK)  # "a" != 1
    assert body('[outbound.pages]\nsend = "named_or_categorized"', {"type": "page", "category": "Docs"})


@pytest.mark.parametrize(("toml", "event", "name"), [
    ('[outbound.pages]\nevent_name = "Viewed {name}"', {"type": "page", "name": "Pricing"}, "Viewed Pricing"),
    ('[outbound.pages]\nevent_name = "{category}: {name}"', {"type": "page", "name": "A", "category": "B"}, "B: A"),
    ('[outbound.pages]\nevent_name = "Viewed {name}"\nunnamed_event_name = "Some Page"', {"type": "page"},
     "Some Page"),
    ('[outbound.pages]\nevent_name = "Page Viewed"', {"type": "page", "name": "X"}, "Page Viewed"),
    ('[outbound.screens]\nevent_name = "{name} Screen Viewed"', {"type": "screen", "name": "Player"},
     "Player Screen Viewed"),
    ('[outbound.events]\n"Played" = { name = "song_played" }', TRACK, "song_played"),
])
def test_names(toml: str, event: dict[str, Any], name: str) -> None:
    assert body(toml, event)["eventName"] == name


@pytest.mark.parametrize(("toml", "fields"), [
    ('[outbound.properties]\nallow = ["song"]', {"song": "x"}),
    ('[outbound.properties]\ndeny = ["card_*"]', {"song": "x", "plan": "a"}),
    ('[outbound.properties]\nrename = { plan = "tier" }', {"song": "x", "card_number": "4111", "tier": "a"}),
    ('[outbound.properties]\ndeny = ["card_*"]\n[outbound.events]\n"Played" = { properties = { allow = ["plan"] } }',
     {"plan": "a"}),  # a per-event allow replaces the global one; the global deny still applies
    ('[outbound.properties]\ndeny = ["card_*"]\n[outbound.events]\n"Played" = { properties = { deny = ["song"],'
     ' rename = { plan = "p" } } }', {"p": "a"}),  # per-event deny and rename add to the global ones
])
def test_property_rules(toml: str, fields: dict[str, Any]) -> None:
    assert body(toml, TRACK)["dataFields"] == fields


def test_a_rename_can_feed_the_special_fields() -> None:
    toml = '[outbound.properties]\nrename = { utm_campaign_id = "campaignId" }'
    assert body(toml, {**TRACK, "properties": {"utm_campaign_id": "77"}})["campaignId"] == 77


SIGNED_UP = {"type": "track", "event": "Signed Up"}


@pytest.mark.parametrize(("toml", "properties", "fields"), [
    # a per-event allow replaces the global one: it can let through a field the global allow leaves out
    ('[outbound.properties]\nallow = ["a"]\n[outbound.events]\n"Signed Up" = { properties = { allow = ["b"] } }',
     {"a": 1, "b": 2, "c": 3}, {"b": 2}),
    # the global rules run once: the global deny does not catch what the global rename produced
    ('[outbound.properties]\ndeny = ["card_*"]\nrename = { holder = "card_holder" }\n[outbound.events]\n'
     '"Signed Up" = { properties = { deny = ["zzz"] } }', {"holder": "Ann", "zzz": 1, "k": 2},
     {"card_holder": "Ann", "k": 2}),
    # nor renames what the global rename produced a second time
    ('[outbound.properties]\nrename = { a = "b" }\n[outbound.events]\n"Signed Up" = { properties = { deny = ["z"] } }',
     {"a": 1, "z": 0}, {"b": 1}),
    # a per-event rename of the same source wins over the global one
    ('[outbound.properties]\nrename = { a = "g" }\n[outbound.events]\n"Signed Up" = { properties = '
     '{ rename = { a = "e" } } }', {"a": 1, "k": 2}, {"e": 1, "k": 2}),
])
def test_the_effective_rules_of_an_event_apply_once(toml: str, properties: dict[str, Any],
                                                     fields: dict[str, Any]) -> None:
    assert body(toml, {**SIGNED_UP, "properties": properties})["dataFields"] == fields


@pytest.mark.parametrize(("rename", "fields"), [
    ('{ a = "b", b = "a" }', {"b": 1, "a": 2}),  # a swap
    ('{ a = "b", b = "c" }', {"b": 1, "c": 2}),  # a chain
    ('{ b = "c", a = "b" }', {"b": 1, "c": 2}),  # the order of the table does not matter
])
def test_renames_apply_to_the_input_keys_at_once(rename: str, fields: dict[str, Any]) -> None:
    assert body(f"[outbound.properties]\nrename = {rename}", {**SIGNED_UP, "properties": {"a": 1, "b": 2}})[
        "dataFields"] == fields
    identify = {"type": "identify", "traits": {"a": 1, "b": 2}}
    assert body(f"[outbound.traits]\nrename = {rename}", identify)["dataFields"] == fields
    cfg = config(f"[inbound.properties]\nrename = {rename}")
    hook = {"email": "a@x.io", "eventName": "pushOpen", "dataFields": {"a": 1, "b": 2}}
    properties = to_track(hook, event_names="segment", received_at=NOW, mapping=cfg.inbound.mapping).properties
    assert fields.items() <= properties.items()


ADDRESS = {"a": 1, "address": {"street": "Main St 1", "city": "Oslo", "geo": {"lat": 59.9, "lng": 10.7}},
           "x.y": "literal", "x": {"y": "nested"}, "lines": [{"sku": "s1", "secret": 1}, {"sku": "s2"}, "plain"]}


@pytest.mark.parametrize(("rules", "fields"), [
    ('deny = ["address.street"]', {**ADDRESS, "address": {"city": "Oslo", "geo": {"lat": 59.9, "lng": 10.7}}}),
    ('deny = ["address.geo.*"]', {**ADDRESS, "address": {"street": "Main St 1", "city": "Oslo", "geo": {}}}),
    ('deny = ["*.street", "address.geo"]', {**ADDRESS, "address": {"city": "Oslo"}}),
    ('allow = ["address.city"]', {"address": {"city": "Oslo"}}),
    ('allow = ["a", "address.geo.lat"]', {"a": 1, "address": {"geo": {"lat": 59.9}}}),
    ('allow = ["address.nowhere"]', {}),  # an object that holds nothing allowed is left out
    ('allow = ["a.b"]', {}),  # a scalar has no keys to keep
    # a path goes through lists of objects; what is not an object is not entered (deny) or kept (allow)
    ('deny = ["lines.secret"]', {**ADDRESS, "lines": [{"sku": "s1"}, {"sku": "s2"}, "plain"]}),
    ('allow = ["lines.sku"]', {"lines": [{"sku": "s1"}, {"sku": "s2"}]}),
    # a key that itself holds a dot is named by the same text: a path names it and the nested key alike
    ('deny = ["x.y"]', {k: v for k, v in ADDRESS.items() if k != "x.y"} | {"x": {}}),
    ('allow = ["x.y"]', {"x.y": "literal", "x": {"y": "nested"}}),
    ('rename = { "address.city" = "city" }',
     {**ADDRESS, "address": {"street": "Main St 1", "geo": {"lat": 59.9, "lng": 10.7}}, "city": "Oslo"}),
    ('rename = { "address.geo.lat" = "lat", "address.city" = "address" }',
     {**ADDRESS, "address": "Oslo", "lat": 59.9}),
    ('rename = { "x.y" = "z" }', {**{k: v for k, v in ADDRESS.items() if k != "x.y"}, "z": "literal"}),
    ('rename = { "nowhere.at_all" = "z", "a.b" = "y" }', ADDRESS),  # a path that is not there moves nothing
])
def test_dotted_paths_name_nested_keys(rules: str, fields: dict[str, Any]) -> None:
    assert body(f"[outbound.properties]\n{rules}", {**SIGNED_UP, "properties": ADDRESS})["dataFields"] == fields


def test_a_dotted_deny_keeps_a_nested_field_out_of_every_call() -> None:
    person = {"address": {"street": "Main St 1", "city": "Oslo"}, "plan": "pro"}
    toml = ('[outbound.traits]\ndeny = ["address.street"]\n[outbound.properties]\ndeny = ["address.street"]\n'
            '[outbound.events]\n"Checkout Completed" = { call = "purchase", properties = { deny = ["card.*"] } }\n'
            '[inbound.properties]\ndeny = ["address.street"]')
    assert body(toml, {"type": "identify", "traits": person})["dataFields"] == {"address": {"city": "Oslo"},
                                                                               "plan": "pro"}
    purchase = body(toml, {"type": "track", "event": "Checkout Completed", "context": {"traits": person},
                           "properties": {"order_id": "o1", "total": 3, "address": person["address"],
                                          "card": {"number": "4111", "brand": "visa"}}})
    assert purchase["dataFields"] == {"order_id": "o1", "address": {"city": "Oslo"}, "card": {}}
    assert purchase["user"]["dataFields"] == {"address": {"city": "Oslo"}, "plan": "pro"}
    hook = {"email": "a@x.io", "eventName": "pushOpen", "dataFields": {"address": person["address"]}}
    track = to_track(hook, event_names="segment", received_at=NOW, mapping=config(toml).inbound.mapping)
    assert track.properties["address"] == {"city": "Oslo"}


IDENTIFY = {"type": "identify", "traits": {"email": "a@x.io", "plan": "pro", "password_hash": "h", "gone": None},
            "context": {"timezone": "Europe/Oslo", "locale": "nb-NO", "ip": "1.2.3.4"}}


@pytest.mark.parametrize(("toml", "fields"), [
    ('[outbound.traits]\nallow = ["plan"]', {"plan": "pro"}),
    ('[outbound.traits]\ndeny = ["password_*"]', {"plan": "pro", "gone": None}),
    ('[outbound.traits]\nrename = { plan = "membershipTier" }', {"membershipTier": "pro", "password_hash": "h",
                                                                 "gone": None}),
    ('[outbound.traits]\nallow = ["plan"]\ncontext_fields = ["timezone", "locale"]',
     {"plan": "pro", "timezone": "Europe/Oslo", "locale": "nb-NO"}),
    ('[outbound.traits]\ndrop_nulls = true\ndeny = ["password_hash"]', {"plan": "pro"}),
])
def test_trait_rules(toml: str, fields: dict[str, Any]) -> None:
    assert body(toml, IDENTIFY)["dataFields"] == {**fields, "email": "a@x.io"}


@pytest.mark.parametrize(("toml", "event", "endpoint"), [
    ('[outbound.events]\n"Checkout Completed" = { call = "purchase", properties = { rename = '
     '{ checkout_id = "order_id", revenue = "total" } } }',
     {"type": "track", "event": "Checkout Completed", "properties": {"checkout_id": "c9", "revenue": 12.5}},
     "commerce/trackPurchase"),
    ('[outbound.events]\n"Order Completed" = { call = "track", name = "Order Completed (legacy)" }',
     {"type": "track", "event": "Order Completed", "properties": {"total": 3}}, "events/track"),
    ('[outbound.events]\n"Cart Viewed" = { call = "cart" }',
     {"type": "track", "event": "Cart Viewed", "properties": {"products": [{"id": "p", "name": "P", "price": 1}]}},
     "commerce/updateCart"),
    ('[outbound.events]\n"Product Added" = { call = "track" }',
     {"type": "track", "event": "Product Added", "properties": {"products": [{"id": "p"}]}}, "events/track"),
])
def test_routing(toml: str, event: dict[str, Any], endpoint: str) -> None:
    result = out(toml, event)
    assert isinstance(result, IterableCall) and result.endpoint == endpoint


def test_a_routed_purchase_reads_renamed_fields_and_its_merge_flag() -> None:
    toml = ('[outbound.events]\n"Invoice Paid" = { call = "purchase", merge_nested_objects = true, properties = '
            '{ rename = { invoice_id = "order_id", amount = "total" } } }')
    purchase = body(toml, {"type": "track", "event": "Invoice Paid", "properties": {"invoice_id": "i1", "amount": 9}})
    assert (purchase["id"], purchase["total"], purchase["user"]["mergeNestedObjects"]) == ("i1", 9.0, True)
    with pytest.raises(InvalidEvent, match="properties.total"):
        out(toml, {"type": "track", "event": "Invoice Paid", "properties": {"invoice_id": "i1"}})
    flagged = {"type": "track", "event": "Invoice Paid", "properties": {"amount": 1},
               "integrations": {"Iterable": {"mergeNestedObjects": False}}}
    assert body(toml, flagged)["user"]["mergeNestedObjects"] is False  # the message's own flag wins


# -- inbound -------------------------------------------------------------------------------------


WEBHOOK = {"email": "a@x.io", "eventName": "emailOpen",
           "dataFields": {"createdAt": "2026-01-01 00:00:00 +00:00", "emailSubject": "Hi", "campaignId": 5,
                          "transactionalData": {"x": 1}}}


@pytest.mark.parametrize(("toml", "key"), [
    ('[inbound.filter]\nallow = ["push*"]', "inbound.filter.allow"),
    ('[inbound.filter]\ndeny = ["email*"]', "inbound.filter.deny"),
])
def test_inbound_filter(toml: str, key: str) -> None:
    row = decide(config(toml), WEBHOOK, "inbound", None, NOW)
    assert row.status is Status.SKIPPED and row.label == key


def test_inbound_names_properties_and_email_spec_aliases() -> None:
    cfg = config('[inbound.events]\nemailOpen = { name = "Opened" }\n[inbound.properties]\n'
                 'deny = ["transactionalData", "emailSubject"]\nrename = { campaignId = "campaign" }')
    track = to_track(WEBHOOK, event_names="segment", received_at=NOW, mapping=cfg.inbound.mapping)
    assert track.event == "Opened"
    assert "transactionalData" not in track.properties and track.properties["campaign"] == 5
    assert "email_subject" not in track.properties  # a denied source does not come back as its alias
    assert track.properties["campaign_id"] == 5  # the aliases read the original fields
    plain = config("[inbound]\nemail_spec_properties = false")
    assert "campaign_id" not in to_track(WEBHOOK, event_names="segment", received_at=NOW,
                                         mapping=plain.inbound.mapping).properties


# -- startup validation: every rule, its message --------------------------------------------------


@pytest.mark.parametrize(("toml", "message"), [
    ('[outbound.events]\n"Signed Up" = { nmae = "x" }', 'outbound.events."Signed Up".nmae: unknown key'),
    ('[outbound.filter]\ntypes = ["identify", "group"]',
     "outbound.filter.types[1]: 'group' cannot be sent to Iterable (SPEC §5)"),
    ('[outbound.filter]\ndeny = ["ok", "[abc"]', "outbound.filter.deny[1]: invalid glob '[abc': unterminated '['"),
    ('[outbound.filter]\nallow = ["Test*"]\ndeny = ["Test*"]', "outbound.filter: 'Test*' is in both allow and deny"),
    ('[outbound.filter]\ndeny = ["Internal *"]\n[outbound.events]\n"Internal Ping" = { name = "p" }',
     "outbound.events.\"Internal Ping\": configured, but outbound.filter.deny 'Internal *' drops it"),
    ('[outbound.events]\n"Signed Up" = { call = "email" }',
     "outbound.events.\"Signed Up\".call: must be one of 'track' | 'purchase' | 'cart', got 'email'"),
    ('[outbound.events]\n"Signed Up" = { merge_nested_objects = true }',
     'outbound.events."Signed Up".merge_nested_objects: only applies to call = "purchase" or "cart"'),
    ('[outbound.pages]\nevent_name = "{title}"',
     "outbound.pages.event_name: unknown placeholder {title} (known: {name}, {category})"),
    ('[outbound.pages]\nevent_name = "{name"',
     "outbound.pages.event_name: stray '{' at character 1 (placeholders are {name} and {category}; write {{ or }} "
     "for a brace)"),
    ('[outbound.screens]\nevent_name = "{ name }"', "outbound.screens.event_name: stray '{' at character 1"),
    ('[outbound.pages]\nevent_name = "Viewed name}"', "outbound.pages.event_name: stray '}' at character 12"),
    ('[outbound.pages]\nevent_name = "{}"', "outbound.pages.event_name: unknown placeholder {}"),
    ('[outbound.properties]\nrename = { a = "b.c" }',
     "outbound.properties.rename.a: the target 'b.c' is a dotted path; a rename moves a field to a top-level key"),
    ('[outbound.properties]\nrename = { address = "addr", "address.city" = "city" }',
     'outbound.properties.rename."address.city": source is inside \'address\', which is renamed too'),
    ('[outbound.properties]\ndeny = ["address"]\nrename = { "address.city" = "city" }',
     'outbound.properties.rename."address.city": source is denied (it would never be seen)'),
    ('[outbound.properties]\nallow = ["name"]\nrename = { "address.city" = "city" }',
     'outbound.properties.rename."address.city": source is not in allow (it would never be seen)'),
    ('[outbound.pages]\nunnamed_event_name = "{name}"',
     "outbound.pages.unnamed_event_name: must not hold a placeholder"),
    ('[outbound.screens]\nsend = "some"', "outbound.screens.send: must be one of 'all' | 'named' | 'categorized' | "
     "'named_or_categorized' | 'none', got 'some'"),
    ('[outbound.filter]\ndrop_if = [{ path = "properties.x", glob = "a", equals = 1 }]',
     "outbound.filter.drop_if[0]: give exactly one of glob, equals, exists"),
    ('[outbound.filter]\ndrop_if = [{ path = "body.x", exists = true }]',
     "outbound.filter.drop_if[0].path: must start with one of type, event, name, userId, anonymousId, properties, "
     "traits, context"),
    ('[outbound.events]\n"Up" = { properties = { allow = ["plan"], rename = { utm = "campaignId" } } }',
     'outbound.events."Up".properties.rename.utm: source is not in allow (it would never be seen)'),
    ('[outbound.properties]\ndeny = ["secret"]\nrename = { secret = "s" }',
     "outbound.properties.rename.secret: source is denied (it would never be seen)"),
    ('[outbound.properties]\nrename = { a = "x", b = "x" }', "outbound.properties.rename.b: 'a' is renamed to 'x' too"),
    ('[outbound.traits]\nallow = ["email"]',
     "outbound.traits.allow[0]: 'email' is an identifier, set outbound.identity.email_paths instead"),
    ('[outbound.identity]\nuser_id_paths = ["userId", "anonymousId"]',
     "outbound.identity.user_id_paths[1]: anonymousId would turn every anonymous visitor into an Iterable user"),
    ('[outbound.identity]\nemail_paths = ["traits..email"]',
     "outbound.identity.email_paths[0]: 'traits..email' is not a dotted path"),
    ('[outbound.traits]\ncontext_fields = ["tz"]', "outbound.traits.context_fields[0]: unknown context key 'tz'"),
    ("[inbound.events]\nemailOpened = { name = \"x\" }",
     "inbound.events.emailOpened: unknown Iterable event type (did you mean emailOpen?)"),
    ('[inbound.filter]\ndeny = ["*Send"]\n[reconcile]\nevent_types = ["emailOpen", "pushSend"]',
     "reconcile.event_types[1]: 'pushSend' is dropped by inbound.filter.deny '*Send'"),
    ("[outbound.traits]\ndrop_nulls = \"yes\"", "outbound.traits.drop_nulls: expected a boolean, got 'yes'"),
    ("[outbound.filter]\nallow = \"Test*\"", "outbound.filter.allow: expected a list of strings"),
])
def test_each_validation_rule_names_its_key(toml: str, message: str) -> None:
    assert any(p.startswith(message) for p in problems(toml)), problems(toml)


@pytest.mark.parametrize(("rules", "event_name"), [
    ('allow = ["address.city"]\nrename = { "address.city" = "city" }', "{name} page"),
    ('allow = ["address"]\nrename = { "address.city" = "city" }', "{{{name}}} page"),
    ('allow = ["a", "b", "address.*"]\ndeny = ["address.street"]\nrename = { a = "b", b = "a" }',
     "{{ {category} }}"),
])
def test_paths_swaps_and_escaped_braces_pass_validation(rules: str, event_name: str) -> None:
    config(f'[outbound.properties]\n{rules}\n[outbound.pages]\nevent_name = "{event_name}"')


def test_escaped_braces_are_sent_as_braces() -> None:
    page = {"type": "page", "name": "Home"}
    assert body('[outbound.pages]\nevent_name = "{{{name}}} page"', page)["eventName"] == "{Home} page"


def test_every_problem_is_listed_at_once() -> None:
    found = problems('[outbound.filter]\ntypes = ["group"]\n[outbound.pages]\nsend = "x"\n'
                     '[outbound.traits]\ncontext_fields = ["tz"]')
    assert len(found) == 3


# -- recipes, digest, --try ------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["web_shop", "b2b_saas", "mobile_app"])
def test_the_readme_recipes_parse_and_match_their_files(recipe: str) -> None:
    text = (RECIPES / f"{recipe}.toml").read_text()
    config(text)
    readme = (RECIPES.parents[2] / "README.md").read_text()
    assert text.split("\n", 1)[1] in readme


@pytest.mark.parametrize("recipe", ["web_shop", "b2b_saas", "mobile_app"])
def test_each_recipe_merged_into_the_example_config_passes(recipe: str) -> None:
    """The README says to merge a recipe's keys into your config: into `config.example.toml` they must pass as
    they are (its `reconcile.event_types` once named types a recipe's inbound filter drops)."""
    example = tomllib.loads((RECIPES.parents[2] / "config.example.toml").read_text())
    env = {"ITERABLE_API_KEY": "ik", "SEGMENT_WRITE_KEY": "sk", "SYNC_WRITE_KEY": "wk", "SEGMENT_SHARED_SECRET": "ss",
           "ITERABLE_WEBHOOK_TOKEN": "tok-0123456789abcdef"}
    parse(merged(example, tomllib.loads((RECIPES / f"{recipe}.toml").read_text())), env)


def test_the_web_shop_recipe_does_what_it_says() -> None:
    shop = (RECIPES / "web_shop.toml").read_text()
    checkout = {"type": "track", "event": "Checkout Completed", "userId": None,
                "context": {"traits": {"email": "c@x.io", "plan": "gold"}},
                "properties": {"checkout_id": "c9", "revenue": 30, "card_last4": "4242"}}
    purchase = body(shop, checkout)
    assert (purchase["id"], purchase["total"], purchase["user"]["dataFields"]) == ("c9", 30.0,
                                                                                  {"membershipTier": "gold"})
    assert "card_last4" not in purchase["dataFields"]
    assert skipped(shop, {**checkout, "context": {"traits": {"email": "me@shop.example"}}}) == \
        "outbound.filter.drop_if"
    legacy = body(shop, {**checkout, "event": "Order Completed", "properties": {"total": 1}})
    assert legacy["eventName"] == "Order Completed (legacy)"


def test_the_digest_names_the_mapping_and_nothing_else() -> None:
    from sync.config import mapping_settings

    base = digest(mapping_settings(config()))
    assert base == digest(mapping_settings(config('[server]\nport = 9000')))  # not a mapping setting
    assert base != digest(mapping_settings(config('[outbound.filter]\ndeny = ["x"]')))
    assert base != digest(mapping_settings(config('[iterable]\nproject_type = "email"')))


def test_try_describes_the_call_or_the_key_that_decided() -> None:
    shop = config((RECIPES / "web_shop.toml").read_text())
    event = {"type": "track", "event": "Internal Sync", "properties": {"email": "a@x.io"}}
    assert describe(decide(shop, event, "outbound", None, NOW)) == \
        "skipped: event 'Internal Sync' matches outbound.filter.deny 'Internal *' (decided by outbound.filter.deny)"
    text = describe(decide(shop, {**event, "event": "Signed Up"}, "outbound", None, NOW))
    assert text.startswith("POST /api/events/track (batched: POST /api/events/trackBulk") and '"Signed Up"' in text


# -- properties: total and deterministic under any config that passes validation -------------------

globs = st.lists(st.sampled_from(["*", "Play*", "Order *", "?layed", "card_*", "plan", "x*", "[A-Z]*"]),
                 max_size=3, unique=True)
fields = st.sampled_from(["song", "plan", "card_number", "total", "order_id", "products", "campaignId"])


@st.composite
def mapping_configs(draw: st.DrawFn) -> str:
    allow, deny = draw(globs), draw(globs)
    deny = [g for g in deny if g not in allow]
    sources = draw(st.lists(fields, max_size=2, unique=True))
    targets = draw(st.lists(st.sampled_from(["a", "b", "total", "campaignId"]), min_size=len(sources),
                            max_size=len(sources), unique=True))
    rename = ", ".join(f'{s} = "{t}"' for s, t in zip(sources, targets, strict=True))
    call = draw(st.sampled_from(["track", "purchase", "cart"]))
    return (f'[iterable]\nproject_type = "{draw(st.sampled_from(["email", "userId", "hybrid"]))}"\n'
            f"[outbound.filter]\nallow = {allow!r}\ndeny = {deny!r}\n".replace("'", '"')
            + f'[outbound.properties]\nrename = {{ {rename} }}\n'
            + f'[outbound.pages]\nsend = "{draw(st.sampled_from(["all", "named", "none"]))}"\n'
            + f'[outbound.traits]\ndrop_nulls = {draw(st.booleans())!s}\n'.lower().replace("[outbound.traits]",
                                                                                        "[outbound.traits]")
            + f'[outbound.events]\n"Played" = {{ call = "{call}" }}\n')


events = st.fixed_dictionaries({
    "type": st.sampled_from(["identify", "track", "page", "screen", "alias"]),
    "event": st.sampled_from(["Played", "Order Completed", "Other"]),
    "userId": st.sampled_from(["u1", "ann@x.io", None]),
    "previousId": st.sampled_from(["old@x.io", "anon"]),
    "name": st.sampled_from(["Home", None]),
    "properties": st.dictionaries(fields, st.one_of(st.none(), st.integers(), st.text(max_size=3),
                                                    st.lists(st.dictionaries(st.sampled_from(["id", "name"]),
                                                                             st.text(max_size=2)), max_size=2)),
                                  max_size=4),
    "traits": st.dictionaries(st.sampled_from(["email", "plan", "phone"]), st.sampled_from(["a@x.io", "p", None]),
                              max_size=3),
})


@settings(max_examples=150, deadline=None)
@given(toml=mapping_configs(), event=events)
def test_the_mapper_stays_total_and_deterministic_under_any_valid_config(toml: str, event: dict[str, Any]) -> None:
    try:
        cfg = config(toml)
    except ConfigError:
        return  # only configs that pass validation are promised anything
    options = outbound_options(cfg)
    validated = validate({**{k: v for k, v in event.items() if v is not None}, "messageId": "m"})
    try:
        first = map_event(validated, options)
    except InvalidEvent:
        with pytest.raises(InvalidEvent):
            map_event(validated, options)
        return
    assert first == map_event(validated, options)
    assert isinstance(first, IterableCall | Skip)
