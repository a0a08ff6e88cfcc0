"""Pure parts of the delivery history and counters (SPEC section 12): event names, reason classes, answer
excerpts without personal data, latency quantiles, the login budget, a relative time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.http.console.budget import LoginBudget
from sync.http.console.views import _moment, _number, _when_rel
from sync.ledger.counters import quantile
from sync.ledger.history import bucket_of, latency_edge
from sync.model import event_name, excerpt, reason_class


@pytest.mark.parametrize(("direction", "kind", "payload", "name"), [
    ("outbound", "track", {"event": "Order Completed"}, "Order Completed"),
    ("outbound", "track", {"event": "  "}, "track"),
    ("outbound", "page", {"name": "Pricing"}, "Pricing"),
    ("outbound", "screen", {}, "screen"),
    ("outbound", "identify", {"event": "ignored"}, "identify"),
    ("outbound", "track", {"event": 42}, "track"),
    ("inbound", "emailOpen", {"eventName": "emailOpen"}, "emailOpen"),
    ("outbound", "track", {"event": "x" * 300}, "x" * 255),
])
def test_the_event_name_an_operator_searches_for(direction: str, kind: str, payload: dict[str, object],
                                                 name: str) -> None:
    assert event_name(direction, kind, payload) == name


@pytest.mark.parametrize(("reason", "cls"), [
    ('Iterable rejected the item: disallowedEventNames (event "Beta")', "disallowed event name"),
    ("Iterable rejected the item: failedUpdates.invalidEmails", "invalid identifier"),
    ("Iterable rejected the item: failedUpdates.notFoundEmails", "user not found"),
    ("HTTP 400 BadParams: User does not exist", "user not found"),
    ("Iterable rejected the item: failedUpdates.conflictEmails", "conflict"),
    ("gave up after 12 attempts: HTTP 503 GenericError", "gave up retrying"),
    ("HTTP 400 BadParams: nope", "upstream refused (4xx)"),
    ("cannot map the event: KeyError('type')", "mapping"),
    ("properties.total: required", "invalid input"),
    ("something new", "other"),
    ("Iterable answered HTTP 400: type mismatch for field plan", "type conflict"),
    (None, "none"),
])
def test_reasons_fall_into_a_few_classes(reason: str | None, cls: str) -> None:
    assert reason_class(reason) == cls


def test_an_excerpt_names_the_list_and_keeps_no_email() -> None:
    answer = {"successCount": 1, "failCount": 1, "invalidEmails": ["Ann@Example.com"],
              "failedUpdates": {"invalidEmails": ["Ann@Example.com"], "notFoundEmails": []},
              "msg": "Invalid email: ann@example.com"}
    text = excerpt(answer, named_by="failedUpdates.invalidEmails")
    assert text.startswith("failedUpdates.invalidEmails named this item")
    assert '"failedUpdates": {"invalidEmails": 1}' in text and '"failCount": 1' in text
    assert "example.com" not in text.lower() and "[email]" in text


def test_latency_quantiles_interpolate_inside_their_bucket() -> None:
    assert quantile({}, 0.5) is None
    counts = {"0.1": 50.0, "1": 50.0}  # half at or under 100 ms, half in the bucket (0.5 s, 1 s]
    assert quantile(counts, 0.5) == pytest.approx(0.1)
    assert quantile(counts, 0.95) == pytest.approx(0.5 + 0.5 * 0.9)
    assert quantile({"+Inf": 3.0}, 0.99) == 86400.0
    assert latency_edge(0.07) == "0.1" and latency_edge(10**6) == "+Inf"


def test_buckets_are_five_minutes_in_utc() -> None:
    assert bucket_of(datetime(2026, 11, 30, 10, 7, 59, tzinfo=UTC)) == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)


def test_a_client_address_is_locked_out_after_its_budget() -> None:
    budget = LoginBudget(limit=3, window=60, lockout=600)
    assert [budget.failed("10.0.0.1", t) for t in (0, 1, 2)] == [False, False, True]
    assert budget.locked("10.0.0.1", 3) == pytest.approx(599)
    assert budget.locked("10.0.0.2", 3) == 0  # another address is not punished
    assert budget.locked("10.0.0.1", 603) == 0
    assert [budget.failed("10.0.0.3", t) for t in (0, 100, 200)] == [False, False, False]  # spread out: fine


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-11-28T09:30", True), ("2026-11-28T09:30:00+05:00", True), ("0001-01-01T00:00:00+05:00", False),
    ("9999-12-31T23:59:59-05:00", False), ("yesterday", False), ("9" * 5000, False), ("", False),
])
def test_times_in_filters(text: str, ok: bool) -> None:
    assert (_moment(text) is not None) is ok


def test_numbers_from_forms_fit_a_bigint() -> None:
    assert _number("42") == 42
    assert [_number(v) for v in ("9" * 19, "٤٢", "-1", "", None, "1e3")] == [None] * 6


def test_times_show_iso_utc_and_a_relative_form() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    shown = str(_when_rel(now - timedelta(minutes=3), now))
    assert 'datetime="2026-11-30T11:57:00Z"' in shown and "2026-11-30 11:57:00 UTC" in shown and "(3 min ago)" in shown
    assert "(in 2 min)" in str(_when_rel(now + timedelta(minutes=2), now))
