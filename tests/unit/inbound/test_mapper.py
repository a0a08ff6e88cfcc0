"""SPEC section 6 on Iterable's sample webhooks, plus properties for any webhook-shaped input."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.errors import InvalidEvent
from sync.inbound.mapper import SEGMENT_NAMES, inbound_key, message_id, to_track, validate
from sync.sandbox.samples import ITERABLE_WEBHOOKS

NOW = datetime(2026, 5, 1, tzinfo=UTC)
BY_NAME = {w["eventName"]: w for w in ITERABLE_WEBHOOKS}


def track(webhook: dict[str, Any], names: str = "segment") -> Any:
    return to_track(validate(webhook), event_names=names, received_at=NOW)


@pytest.mark.parametrize("webhook", ITERABLE_WEBHOOKS, ids=lambda w: w["eventName"])
def test_every_sample_maps_with_identity_context_and_timestamp(webhook: dict[str, Any]) -> None:
    result = track(webhook)
    fields = webhook["dataFields"]
    assert result.event == SEGMENT_NAMES[webhook["eventName"]]
    assert result.user_id == webhook.get("userId")
    assert result.anonymous_id == (None if webhook.get("userId") else webhook["email"])
    assert result.context["traits"] == {"email": webhook["email"]}
    assert result.context["integration"]["name"] == "iterable"
    assert result.integrations == {"Iterable": False}
    assert result.timestamp == datetime.strptime(fields["createdAt"], "%Y-%m-%d %H:%M:%S %z")
    assert {k: result.properties[k] for k in fields} == fields
    assert result.message_id.startswith("iterable-") and len(result.message_id) < 100


def test_email_open_has_email_spec_names_and_context_ip_user_agent() -> None:
    result = track(BY_NAME["emailOpen"])
    fields = BY_NAME["emailOpen"]["dataFields"]
    assert result.event == "Email Opened"
    assert result.context["ip"] == "66.249.84.204" and result.context["userAgent"] == fields["userAgent"]
    assert result.properties["email_id"] == "c49313:t79190:docs@iterable.com"
    assert result.properties["email_subject"] == "My subject"
    assert (result.properties["campaign_id"], result.properties["campaign_name"]) == (49313, "My campaign name")


def test_email_click_adds_link_fields() -> None:
    result = track(BY_NAME["emailClick"])
    assert result.event == "Email Link Clicked"
    assert (result.properties["link_url"], result.properties["link_id"]) == ("https://www.iterable.com",
                                                                           "3145668988")


def test_push_events_keep_camel_case_properties_only() -> None:
    result = track(BY_NAME["pushSend"])
    assert result.event == "Push Delivered" and "email_id" not in result.properties
    assert track(BY_NAME["pushUninstall"]).event == "Mobile App Uninstalled"


@pytest.mark.parametrize(("name", "segment"), sorted(SEGMENT_NAMES.items()))
def test_the_name_table(name: str, segment: str) -> None:
    webhook = {"email": "a@example.com", "eventName": name, "dataFields": {"createdAt": "2026-01-01 00:00:00 +00:00"}}
    assert track(webhook).event == segment
    assert track(webhook, "iterable").event == name


def test_unknown_event_names_pass_through() -> None:
    assert track({"email": "a@example.com", "eventName": "journeyExit"}).event == "journeyExit"


def test_missing_created_at_uses_the_receive_time() -> None:
    assert track({"email": "a@example.com", "eventName": "emailOpen"}).timestamp == NOW


@pytest.mark.parametrize(("webhook", "field"), [
    ({"email": "a@example.com"}, "eventName"), ({"eventName": "emailOpen"}, "email"),
    ({"eventName": "emailOpen", "dataFields": []}, "dataFields"), ([], "body"),
])
def test_bad_webhooks_name_the_field(webhook: Any, field: str) -> None:
    with pytest.raises(InvalidEvent, match=field):
        validate(webhook)


def test_user_id_or_data_fields_email_is_enough() -> None:
    assert track({"userId": "u9", "eventName": "pushOpen"}).user_id == "u9"
    assert track({"eventName": "pushOpen", "dataFields": {"email": "d@example.com"}}).anonymous_id == "d@example.com"


def test_inbound_key_is_stable_and_separates_distinct_events() -> None:
    sample = BY_NAME["emailClick"]
    assert inbound_key(sample) == inbound_key(copy.deepcopy(sample))
    other_url = copy.deepcopy(sample)
    other_url["dataFields"]["url"] = "https://example.com/other"
    later = copy.deepcopy(sample)
    later["dataFields"]["createdAt"] = "2016-12-02 20:31:40 +00:00"
    assert len({inbound_key(sample), inbound_key(other_url), inbound_key(later)}) == 3


SAME_SECOND = "2024-05-06 07:08:09 +00:00"


@pytest.mark.parametrize(("event", "field", "values"), [
    ("customEvent", "eventName", ("Trial Started", "Plan Upgraded")),  # a custom event's own name
    ("smsReceived", "smsMessage", ("STOP", "HELP")),  # two texts from one number
    ("emailClick", "href", ("https://a.example/3", "https://a.example/4")),  # the link named only in href
    ("inAppClick", "clickedUrl", ("https://a.example/x", "https://a.example/y")),
    ("emailSubscribe", "emailListIds", ([1], [2])),
])
def test_two_events_without_a_message_id_that_differ_in_what_tells_them_apart_stay_two(
        event: str, field: str, values: tuple[object, object]) -> None:
    """A bug hunt found the first three merged: same recipient, same second, no messageId, and the field that
    told them apart left out of the key. A retry of either still dedupes."""
    first, second = ({"email": "c@example.com", "eventName": event,
                      "dataFields": {"createdAt": SAME_SECOND, "email": "c@example.com", field: value}}
                     for value in values)
    assert inbound_key(first) != inbound_key(second)
    assert inbound_key(first) == inbound_key(copy.deepcopy(first))


def test_user_ids_that_differ_in_case_are_two_people_and_emails_that_do_are_one() -> None:
    """A bug hunt: `User-A` and `user-a` got the same campaign's push open in one second; the key lower-cased
    the userId and the second event was taken for a retry of the first and never sent."""
    hook = {"eventName": "pushOpen", "dataFields": {"createdAt": SAME_SECOND, "campaignId": 1, "templateId": 2}}
    assert inbound_key({**hook, "userId": "User-A"}) != inbound_key({**hook, "userId": "user-a"})
    assert inbound_key({**hook, "email": "Ann@Example.com"}) == inbound_key({**hook, "email": "ann@example.com"})


def test_export_record_shape_dedupes_with_the_webhook() -> None:
    webhook = BY_NAME["emailOpen"]
    export = {**webhook["dataFields"], "eventName": "emailOpen"}  # export rows carry the fields at top level
    export["dataFields"] = webhook["dataFields"]
    assert inbound_key(export) == inbound_key(webhook)


def test_oversized_messages_are_rejected() -> None:
    with pytest.raises(InvalidEvent, match="32 KB"):
        track({"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"blob": "x" * 40000}})


webhooks = st.fixed_dictionaries(
    {"eventName": st.sampled_from([*SEGMENT_NAMES, "custom"]) | st.text(max_size=20)},
    optional={
        "email": st.sampled_from(["a@example.com", ""]) | st.text(max_size=30),
        "userId": st.none() | st.text(max_size=20) | st.integers(),
        "dataFields": st.dictionaries(
            st.sampled_from(["createdAt", "messageId", "campaignId", "templateId", "ip", "userAgent", "url",
                             "emailId", "linkUrl", "email", "blob"]),
            st.none() | st.integers() | st.text(max_size=40) | st.sampled_from(
                ["2026-01-01 00:00:00 +00:00", "x" * 34000]) | st.floats(allow_nan=False),
            max_size=8),
    },
)


@settings(max_examples=300, deadline=None)
@given(webhooks, st.sampled_from(["segment", "iterable"]))
def test_mapper_never_raises_unexpectedly_is_deterministic_and_small(webhook: dict[str, Any], names: str) -> None:
    try:
        valid = validate(webhook)
        first = to_track(valid, event_names=names, received_at=NOW)
    except InvalidEvent:
        return
    assert first == to_track(valid, event_names=names, received_at=NOW)
    assert first.user_id or first.anonymous_id
    assert first.timestamp.tzinfo is not None
    assert first.message_id == message_id(inbound_key(valid)) and len(first.message_id) < 100


def test_a_webhook_and_its_export_record_share_the_message_key_whatever_identifiers_they_carry() -> None:
    """A bug hunt: a userId-only webhook and the export record of the same event carrying the email too got two
    keys and reached Segment twice. Iterable's messageId names one recipient's message: the second key (the
    ledger dedupes on either) leaves the recipient out."""
    from sync.inbound.export import as_webhook
    from sync.inbound.mapper import message_key

    webhook = {"userId": "uo-1", "eventName": "emailOpen",
               "dataFields": {"createdAt": "2016-12-03 11:00:00 +00:00", "campaignId": 5, "templateId": 6,
                              "messageId": "nnn"}}
    record = {"email": "uo1@example.com", "userId": "uo-1", "createdAt": "2016-12-03 11:00:00 +00:00",
              "campaignId": 5, "templateId": 6, "messageId": "nnn"}
    exported = as_webhook("emailOpen", record)
    assert inbound_key(webhook) != inbound_key(exported)  # the recipient differs: email, else userId
    assert message_key(webhook) == message_key(exported) is not None
    later = {**webhook, "dataFields": {**webhook["dataFields"], "createdAt": "2016-12-03 11:00:01 +00:00"}}
    assert message_key(later) != message_key(webhook)  # a second open of the same message is another event
    assert message_key({"eventName": "pushOpen", "userId": "u", "dataFields": {"createdAt": SAME_SECOND}}) is None


# -- a fresh-eyes review of the inbound side ----------------------------------------------------------------


def test_an_exported_custom_event_keeps_its_time_name_and_fields() -> None:
    """The export nests a custom event's (and a purchase's) fields in ``dataFields``; its own time, name and
    message are at the top. Only the nested ones were kept: the track took the run's "now", was named
    "customEvent", and two custom events of one person merged into one."""
    from sync.inbound.export import as_webhook

    records = [{"createdAt": "2016-12-09 10:00:00 +00:00", "email": "cust@example.com", "eventName": name,
                "dataFields": {"plan": "pro", "createdAt": "not the event's time"}, "_type": "customEvent"}
               for name in ("Trial Started", "Plan Upgraded")]
    hooks = [validate(as_webhook("customEvent", record)) for record in records]
    assert inbound_key(hooks[0]) != inbound_key(hooks[1])
    first = to_track(hooks[0], event_names="segment", received_at=NOW)
    assert first.event == "Trial Started"
    assert first.timestamp == datetime(2016, 12, 9, 10, tzinfo=UTC)
    assert first.properties["plan"] == "pro" and "_type" not in first.properties
    flat = as_webhook("emailOpen", {"createdAt": "2016-12-09 10:00:00 +00:00", "email": "a@example.com",
                                    "messageId": "m1", "_type": "emailOpen"})
    assert flat["dataFields"] == {"createdAt": "2016-12-09 10:00:00 +00:00", "email": "a@example.com",
                                  "messageId": "m1"}  # a flat record as before


@pytest.mark.parametrize(("name", "first", "second"), [
    ("whatsAppClick", {"url": "https://x/1"}, {"url": "https://x/2"}),
    ("embeddedClick", {"buttonIdentifier": "b1", "targetUrl": "https://x/1"},
     {"buttonIdentifier": "b2", "targetUrl": "https://x/2"}),
    ("embeddedClick", {"targetUrl": "https://x/1"}, {"targetUrl": "https://x/2"}),
    ("rcsClick", {"clickedUrl": "https://x/1"}, {"clickedUrl": "https://x/2"}),  # any click Iterable adds
])
def test_two_clicks_of_one_message_on_different_links_are_two_events(
        name: str, first: dict[str, Any], second: dict[str, Any]) -> None:
    """Only five click events were known as clicks: two WhatsApp or embedded clicks of one message merged."""
    from sync.inbound.mapper import message_key

    def hook(link: dict[str, Any]) -> dict[str, Any]:
        return validate({"email": "wa@example.com", "eventName": name, "dataFields": {
            "createdAt": "2016-12-09 22:52:38 +00:00", "messageId": "wa1", **link}})

    assert inbound_key(hook(first)) != inbound_key(hook(second))
    assert message_key(hook(first)) != message_key(hook(second))
    assert inbound_key(hook(first)) == inbound_key(hook(dict(first)))  # a retry is still one event


@pytest.mark.parametrize("user_id", [{"a": 1}, ["u"], True])
def test_an_inbound_user_id_that_is_neither_text_nor_a_number_is_refused(user_id: Any) -> None:
    """It was dropped: the event went to Segment as anonymous."""
    with pytest.raises(InvalidEvent, match="^userId: expected a string"):
        validate({"email": "obj@example.com", "userId": user_id, "eventName": "emailOpen", "dataFields": {}})


def test_two_events_without_a_time_that_differ_in_any_field_are_two_events() -> None:
    """A bug hunt: Iterable's API marks createdAt optional on some events; without it, two opens of one person
    and campaign merged into one row for as long as the ledger kept it."""
    def opened(**fields: Any) -> dict[str, Any]:
        return validate({"email": "nc@example.com", "eventName": "pushOpen",
                         "dataFields": {"campaignId": 5, "templateId": 6, **fields}})

    assert inbound_key(opened(platform="iOS")) != inbound_key(opened(platform="Android"))
    assert inbound_key(opened(appAlreadyRunning=True)) != inbound_key(opened(appAlreadyRunning=False))
    assert inbound_key(opened(platform="iOS")) == inbound_key(opened(platform="iOS"))  # a retry is one event
