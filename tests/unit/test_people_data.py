"""People's data, the pure parts (issue 22): identifier normal forms, consent as Segment and RudderStack define
it, masking, the retry of deletions, and what an inbound track learns from the ledger."""

from __future__ import annotations

import json
import random
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync import masking, people
from sync.engine.settlement import Failure, deletion_retry
from sync.inbound import people as inbound_people
from sync.model import Direction, Known, NewEvent, Status
from sync.outbound import consent

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("spelling", [
    "zoë@example.com",  # the keyboard: composed
    unicodedata.normalize("NFD", "zoë@example.com"),  # macOS file names, some CRM exports: decomposed
    "Zoë@Example.COM", "  zoë@example.com\t", "\u00a0ZOË@EXAMPLE.COM",  # a mobile app's autocapitalised form
    "ｚｏë@example.com",  # full-width letters (East Asian input methods): NFKC folds them
])
def test_every_spelling_of_an_email_is_one_identifier(spelling: str) -> None:
    assert people.identifier(spelling) == people.email_identifier(spelling) == "e:zoë@example.com"


@pytest.mark.parametrize(("value", "expected"), [
    (" user-1 ", "u:user-1"), (unicodedata.normalize("NFD", "josé"), "u:josé"), ("User-1", "u:User-1"), (42, "u:42"),
])
def test_user_ids_are_trimmed_and_composed_but_keep_their_case(value: Any, expected: str) -> None:
    assert people.identifier(value) == expected


def ctx(**context: Any) -> dict[str, Any]:
    return {"context": context}


@pytest.mark.parametrize(("event", "expected"), [
    ({}, None),  # no consent object: not checked
    (ctx(traits={}), None),
    (ctx(consent={"categoryPreferences": {"Marketing": True, "Ads": False}}), {"Marketing": True, "Ads": False}),
    (ctx(consent={"categoryPreferences": {}}), {}),  # empty: denies
    (ctx(consent={"categoryPreferences": {"Marketing": "yes"}}), {"Marketing": False}),  # only true grants
    (ctx(consentManagement={"allowedConsentIds": ["C0001"], "deniedConsentIds": ["C0004"], "provider": "oneTrust"}),
     {"C0001": True, "C0004": False}),
    (ctx(consentManagement={}), {}),
])
def test_consent_is_read_from_segment_and_rudderstack_objects(event: dict[str, Any], expected: Any) -> None:
    assert consent.preferences(event) == expected


@pytest.mark.parametrize(("seen", "required", "expected"), [
    (None, ["Marketing"], None), ({}, ["Marketing"], "Marketing"), ({"Marketing": True}, ["Marketing"], None),
    ({"Marketing": True}, ["Marketing", "Ads"], "Ads"), ({"marketing": True}, ["Marketing"], "Marketing"),
    ({"Ads": False}, [], None),
])
def test_every_required_category_must_be_granted(seen: Any, required: list[str], expected: str | None) -> None:
    assert consent.denied(seen, required) == expected


@pytest.mark.parametrize(("text", "ids", "expected"), [
    ("HTTP 400 InvalidEmailAddressError: Invalid email: Zoë@Example.com", [], "... Invalid email: [email]"),
    ("conflictUserIds: [\"acct-77\"] for <a.b+c@x.co>", ["acct-77"], "conflictUserIds: [\"[userId]\"] for <[email]>"),
    ("User ACCT-77 not found", ["acct-77"], "User [userId] not found"),
    ("events/trackBulk: TimeoutError", [], "events/trackBulk: TimeoutError"),
    ("HTTP 400 BadParams: user Bad is blocked", ["Bad"], "HTTP 400 BadParams: user [userId] is blocked"),
])
def test_upstream_messages_lose_emails_and_the_users_id(text: str, ids: list[str], expected: str) -> None:
    masked = masking.mask(text, ids)
    assert masked.endswith(expected.removeprefix("..."))


def test_masking_stays_linear_on_long_text_without_spaces() -> None:
    import time

    started = time.perf_counter()
    assert masking.mask("a" * 50_000 + "@" + "b" * 50_000 + " zoe@example.com").endswith("b [email]")
    assert time.perf_counter() - started < 2.0  # an unbounded pattern takes minutes here


def test_the_values_a_request_names_are_found_in_its_body() -> None:
    body = {"user": {"email": "a@b.co", "userId": "u-1"}, "id": "order-1", "currentEmail": "c@d.co"}
    assert sorted(masking.named_in(body)) == ["a@b.co", "c@d.co", "u-1"]


@pytest.mark.parametrize(("error", "retryable", "at_least", "at_most"), [
    ("HTTP 429 RateLimitExceeded: Daily limit of forget requests exceeded", True, 3600, 3600),
    ("HTTP 400 BadParams: nope", False, 0, 2 ** 9),
    ("users/forget: ClientConnectorError", True, 0, 2 ** 9),
])
def test_a_deletion_always_gets_a_next_attempt(error: str, retryable: bool, at_least: float, at_most: float) -> None:
    at = deletion_retry(now=NOW, attempts=10, failure=Failure(row_id=1, error=error, retryable=retryable),
                        rng=random.Random(1))
    assert NOW + timedelta(seconds=at_least) <= at <= NOW + timedelta(seconds=at_most)


def inbound(mapped: dict[str, Any] | None = None) -> NewEvent:
    return NewEvent(direction=Direction.INBOUND, key="k", kind="emailOpen", payload={},
                    identities=("e:j@example.com",), mapped=mapped or {"user_id": None, "anonymous_id": "j@example.com"})


@pytest.mark.parametrize(("known", "join", "status", "user_id"), [
    (Known(user_id="j-1"), True, Status.PENDING, "j-1"),
    (Known(user_id="j-1"), False, Status.PENDING, None),
    (Known(user_id="j-1", consent={"Analytics": False}), True, Status.SKIPPED, None),
    (Known(consent={"Analytics": True}), True, Status.PENDING, None),
    (Known(), True, Status.PENDING, None),  # nothing seen outbound: not checked, nothing to join
])
def test_an_inbound_track_obeys_the_persons_consent_and_carries_their_user_id(
        known: Known, join: bool, status: Status, user_id: str | None) -> None:
    row = inbound_people.decided(inbound(), {"e:j@example.com": known}, categories=["Analytics"], join=join)
    assert row.status is status
    assert (row.mapped or {}).get("user_id") == user_id
    if status is Status.SKIPPED:
        assert row.reason == "filtered by end-user consent: Analytics" and row.mapped is None


def test_check_config_try_shows_the_consent_decision(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from sync import cli
    from tests.support import daemon_config

    path = tmp_path / "sync.toml"
    path.write_text(daemon_config(8787, f"sqlite:///{tmp_path}/l.db", "http://127.0.0.1:9", "http://127.0.0.1:9",
                                  extra='[consent]\noutbound_categories = ["Marketing"]\n'
                                        'inbound_categories = ["Analytics"]\n'))
    tries = {"denied": {"type": "track", "userId": "u", "event": "E",
                        "context": {"consent": {"categoryPreferences": {"Marketing": False}}}},
             "granted": {"type": "track", "userId": "u", "event": "E",
                         "context": {"consentManagement": {"allowedConsentIds": ["Marketing"]}}},
             "absent": {"type": "track", "userId": "u", "event": "E"}}
    said = {}
    for name, event in tries.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(event))
        assert cli.main(["check-config", "--config", str(path), "--try", str(tmp_path / f"{name}.json")]) == 0
        said[name] = capsys.readouterr().out
    assert said["denied"].startswith("skipped: filtered by end-user consent: Marketing "
                                     "(decided by consent.outbound_categories)")
    assert "consent: granted Marketing" in said["granted"]
    assert "no consent object: not checked" in said["absent"]
    hook = tmp_path / "hook.json"
    hook.write_text('{"email": "a@b.co", "eventName": "emailOpen", "dataFields": {"messageId": "m"}}')
    assert cli.main(["check-config", "--config", str(path), "--try", str(hook), "--direction", "inbound"]) == 0
    assert "last consent seen outbound grants Analytics" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "masked"), [
    ("Invalid phoneNumber +15550001111", "Invalid phoneNumber [phone]"),
    ('{"phoneNumber":"+1 555-000-1111"}', '{"phoneNumber":"[phone]"}'),
    ("call +44 (20) 7946 0958.", "call [phone]."),
    ("HTTP 400 at 12:00, code 4001234567", "HTTP 400 at 12:00, code 4001234567"),  # no "+": not a phone shape
    ("version +1.2", "version +1.2"), ("score +12345", "score +12345"),  # too short for E.164
])
def test_a_phone_number_in_an_upstream_message_is_masked(text: str, masked: str) -> None:
    """A bug hunt: Iterable's answers quoting a user's phone number were stored and logged as they came."""
    assert masking.mask(text) == masked


def test_check_config_try_shows_every_call_serve_makes_in_order(tmp_path: Any,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--try printed only the identify's users/update; serve also sends its subscriptions and its push token."""
    from sync import cli
    from tests.support import daemon_config

    path = tmp_path / "sync.toml"
    path.write_text(daemon_config(8787, f"sqlite:///{tmp_path}/l.db", "http://127.0.0.1:9", "http://127.0.0.1:9",
                                  extra='[iterable.push]\napns_application_name = "com.example.ios"\n'))
    event = tmp_path / "identify.json"
    event.write_text(json.dumps({"type": "identify", "userId": "u1", "messageId": "m1",
                                 "context": {"device": {"type": "ios", "token": "tok"}},
                                 "traits": {"email": "a@b.co", "emailListIds": [1, 2], "plan": "x"}}))
    assert cli.main(["check-config", "--config", str(path), "--try", str(event)]) == 0
    out = capsys.readouterr().out
    calls = [line for line in out.splitlines() if line.startswith("POST /api/")]
    assert [c.split(" ")[1] for c in calls] == ["/api/users/update", "/api/users/registerDeviceToken",
                                                "/api/users/updateSubscriptions"]
    assert '"emailListIds": [' in out and '"applicationName": "com.example.ios"' in out


def test_check_config_try_explains_a_purchase_from_its_properties_as_the_rule_renamed_them(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The body had "id": "c-9" (checkout_id renamed to order_id by the event's rule) while the note under it
    said "id from messageId (no order_id, orderId or id)": the note read the event before its rule."""
    from sync import cli
    from tests.support import daemon_config

    path = tmp_path / "sync.toml"
    path.write_text(daemon_config(8787, f"sqlite:///{tmp_path}/l.db", "http://127.0.0.1:9", "http://127.0.0.1:9",
                                  extra='[outbound.events]\n"Checkout Completed" = { call = "purchase", properties = '
                                        '{ rename = { checkout_id = "order_id", revenue = "total" } } }\n'))
    event = tmp_path / "checkout.json"
    event.write_text(json.dumps({"type": "track", "userId": "u1", "messageId": "m1", "event": "Checkout Completed",
                                 "properties": {"checkout_id": "c-9", "revenue": 12.5}}))
    assert cli.main(["check-config", "--config", str(path), "--try", str(event)]) == 0
    out = capsys.readouterr().out
    assert '"id": "c-9"' in out
    assert "id from properties.order_id" in out and "total from properties.total" in out
