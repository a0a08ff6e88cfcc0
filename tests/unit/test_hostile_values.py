"""Pure rules under values nobody expected (issue 10): Retry-After, overflowing numbers, sizes,
credentials, downtime and people."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import people
from sync.engine import retry as schedule
from sync.engine.intake import inbound_row, outbound_options, outbound_rows
from sync.errors import InvalidEvent
from sync.http import auth
from sync.inbound.mapper import MAX_MESSAGE_BYTES, to_track
from sync.iterable.bulk import bulk_failures
from sync.model import Status
from sync.outbound import mapper as outbound
from sync.segment.spec import MAX_EVENT_BYTES, validate
from sync.segment.timestamps import ITERABLE_FORMAT, iterable_text
from sync.wire import TooMany, array_slices, finite_size, json_size, non_finite, segment_size, strict_loads
from tests.support import make_config

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(("header", "expected"), [
    # RFC 9110 section 10.2.3: delay-seconds (1*DIGIT) or an HTTP date in any of its three forms
    ("30", 30.0), ("0", 0.0), ("2.5", 2.5), (" 7 ", 7.0), ("500", schedule.MAX_RETRY_AFTER),
    ("86400", schedule.MAX_RETRY_AFTER),
    ("Mon, 01 Jun 2026 00:00:10 GMT", 10.0), ("Monday, 01-Jun-26 00:00:10 GMT", 10.0),
    ("Mon Jun  1 00:00:10 2026", 10.0), ("Mon, 01 Jun 2026 00:05:00 GMT", schedule.MAX_RETRY_AFTER),
    ("Sun, 31 May 2026 23:00:00 GMT", 0.0),  # already past: go now
    # SPEC section 4: not a finite, non-negative number of seconds or a date, or over a day: absent
    ("inf", None), ("Infinity", None), ("-inf", None), ("1e15", None), ("1e3", None), ("-5", None), ("+5", None),
    ("nan", None), ("NaN", None), ("0x10", None), ("1_000", None), ("soon", None), ("", None), ("\u0661", None),
    ("86401", None), ("99999999999999999999", None), ("Thu, 01 Jan 2099 00:00:00 GMT", None),
    ("Mon, 32 Jun 2026 00:00:10 GMT", None),
])
def test_retry_after_is_honoured_up_to_120_s_and_absurd_values_are_absent(header: str,
                                                                          expected: float | None) -> None:
    assert schedule.parse_retry_after(header, NOW) == expected


def test_an_infinite_retry_after_schedules_a_finite_time() -> None:
    """Before the fix ``inf`` raised OverflowError in timedelta and the worker (and daemon) died."""
    at = schedule.next_attempt(now=NOW, received_at=NOW, attempts=1, max_retry_hours=72, rng=random.Random(1),
                               retry_after=float("inf"))
    assert at is not None and NOW < at <= NOW + timedelta(seconds=schedule.MAX_RETRY_AFTER + 1)


def test_downtime_does_not_use_up_the_retry_window() -> None:
    """Issue 10 item 3: a row received 100 h ago, 40 h of which the direction was paused, is still
    inside a 72 h window of time in which it could have been tried."""
    received = NOW - timedelta(hours=100)
    paused = [(NOW - timedelta(hours=90), NOW - timedelta(hours=50))]
    excluded = schedule.downtime_within(paused, received, NOW)
    assert excluded == 40 * 3600
    rng = random.Random(3)
    assert schedule.next_attempt(now=NOW, received_at=received, attempts=3, max_retry_hours=72, rng=rng) is None
    assert schedule.next_attempt(now=NOW, received_at=received, attempts=3, max_retry_hours=72, rng=rng,
                                 excluded_seconds=excluded) is not None


def test_downtime_spans_overlapping_or_open_count_once() -> None:
    spans = [(NOW - timedelta(hours=5), NOW - timedelta(hours=2)), (NOW - timedelta(hours=3), None),
             (NOW - timedelta(hours=20), NOW - timedelta(hours=19))]
    assert schedule.downtime_within(spans, NOW - timedelta(hours=10), NOW) == 5 * 3600


def test_numbers_that_overflow_are_invalid_naming_the_field() -> None:
    event = strict_loads(b'{"type":"track","userId":"u","event":"E","properties":{"price":1e999}}')
    assert non_finite(event) == "properties.price"
    with pytest.raises(InvalidEvent, match="properties.price"):
        validate(event)
    with pytest.raises(ValueError):
        strict_loads(b'{"x": NaN}')


def test_the_segment_size_limit_counts_bytes_as_the_library_sends_them() -> None:
    """Issue 10 item 10: the library escapes non-ASCII (six bytes for an ``é``), so 12,000 of them are
    24 KB of UTF-8 but 72 KB on the wire: the webhook must be refused at intake, not die later."""
    text = "é" * 12_000
    assert len(json.dumps(text, ensure_ascii=False).encode()) < MAX_MESSAGE_BYTES < segment_size(text)
    webhook = {"email": "a@x.io", "eventName": "emailOpen", "dataFields": {"note": text}}
    with pytest.raises(InvalidEvent, match="32 KB"):
        to_track(webhook, event_names="segment", received_at=NOW)


@pytest.mark.parametrize("header", ["Basic ñandú", "Basic \u00e9\u00e9==", "ñ"])
def test_a_non_ascii_authorization_header_is_no_write_key(header: str) -> None:
    assert auth.basic_username(header) is None


def test_the_body_write_key_is_checked_before_parsing() -> None:
    assert auth.body_key_plausible(b'{"batch": [], "writeKey": "k1"}', ["k0", "k1"])
    assert not auth.body_key_plausible(b'{"batch": [], "writeKey": "nope"}', ["k1"])
    assert not auth.body_key_plausible(b'{"batch": []}', ["k1"])
    stuffed = b'{"a":[' + b",".join(b'{"writeKey":"x%d"}' % i for i in range(10_000)) + b'], "writeKey": "k1"}'
    assert not auth.body_key_plausible(stuffed, ["k1"])  # only the first few candidates are looked at


@pytest.mark.parametrize("written", [rb"wk-secret\u002d123", rb"\u0077k-secret-123", rb"wk-secret-123"])
def test_a_body_write_key_written_with_json_escapes_is_the_same_key(written: bytes) -> None:
    """The parser reads `"wk-secret\u002d123"` as `wk-secret-123`; the scan before it refused it (401) where
    the same key in Basic auth passed."""
    assert auth.body_key_plausible(b'{"batch": [], "writeKey": "' + written + b'"}', ["wk-secret-123"])
    assert not auth.body_key_plausible(b'{"writeKey": "' + written.replace(b"123", b"124") + b'"}', ["wk-secret-123"])


def test_bulk_failures_match_user_ids_exactly_and_count_what_they_cannot_match() -> None:
    bodies = [{"userId": "Ann"}, {"userId": "ann"}, {"email": "B@x.io"}]
    outcome = bulk_failures({"failCount": 3, "failedUpdates": {"invalidUserIds": ["ann"],
                                                               "invalidEmails": ["b@x.io"]}}, bodies)
    assert set(outcome.failed) == {1, 2} and outcome.unmatched == 1


def test_people_join_identifiers_and_merge_in_one_direction() -> None:
    links, merges = people.link({}, [("u:u1", "e:a@x.io")])
    assert links == {"u:u1": "u:u1", "e:a@x.io": "u:u1"} and merges == {}
    known = {**links, "e:new@x.io": "e:new@x.io"}
    links, merges = people.link(known, [("e:new@x.io", "e:a@x.io")])  # an alias joins two people
    assert merges == {"u:u1": "e:new@x.io"}  # two stored people: the smaller key survives
    assert links == {"e:a@x.io": "e:new@x.io"}  # u:u1 follows its person through the merge
    assert people.identifier("Ann@X.io") == "e:ann@x.io" and people.identifier("Ann") == "u:Ann"
    assert people.identifier(42) == "u:42" and people.identifier(None) is None
    assert len(people.identifier("u" * 400) or "") < 100


def test_basic_header_still_works() -> None:
    header = "Basic " + base64.b64encode(b"key:").decode()
    assert auth.basic_username(header) == "key"


# Issue 20 item 8: values that parse as JSON but cannot be converted. Dates at the calendar's edges with offsets
# that push them past year 1 or 9999 (RFC 3339 allows offsets up to +/-23:59; Segment's ISO-8601 forms carry
# them), numbers past a float or an int's digit limit, nesting past any mapper's recursion.
EDGE_VALUES = [
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00", "0001-01-01T00:00:00+23:59",
    "0001-01-01 00:00:00 +00:01", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-00:01",
    "9999-12-31T23:59:59-14:00", "9999-12-31 23:59:59 -23:59", 1e308, -1e308, 10**40, -(10**300), 5e-324,
]


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _options() -> outbound.Options:
    return outbound_options(make_config(ledger_url="sqlite://"))


@pytest.mark.parametrize("value", [*EDGE_VALUES, _nested(900), [[[[[]]]]] * 2000, {f"k{i}": i for i in range(4000)}])
@pytest.mark.parametrize("where", ["properties", "traits", "context", "timestamp", "originalTimestamp"])
@pytest.mark.parametrize("kind", ["track", "identify", "page"])
def test_a_value_that_cannot_be_converted_rejects_only_its_event(value: object, where: str, kind: str) -> None:
    good = {"type": "track", "userId": "u1", "event": "E", "messageId": "good"}
    bad = {"type": kind, "userId": "u2", "event": "Order Completed", "messageId": "bad",
           where: value if where in ("timestamp", "originalTimestamp") else {"v": value, "list": [value]}}
    rows, rejected = outbound_rows([good, bad, good | {"messageId": "good2"}], _options(), "d")
    assert {r.key for r in rows if r.status is Status.PENDING} >= {"good", "good2"}
    assert {r.index for r in rejected} <= {1}
    for row in rows:
        json.dumps(row.payload)  # whatever is recorded can be stored


@pytest.mark.parametrize("value", [*EDGE_VALUES, _nested(900)])
@pytest.mark.parametrize("field", ["createdAt", "sentAt", "campaignId", "messageId", "nested"])
def test_an_iterable_webhook_value_that_cannot_be_converted_is_a_clear_refusal(value: object, field: str) -> None:
    webhook = {"email": "a@x.io", "eventName": "emailOpen",
               "dataFields": {"createdAt": "2026-01-01 00:00:00 +00:00", "messageId": "m", field: value}}
    try:
        row = inbound_row(webhook, event_names="segment", now=NOW)
    except InvalidEvent:
        return
    assert row.status in (Status.PENDING, Status.REJECTED)
    json.dumps(row.payload)


@pytest.mark.parametrize("text", ["[]", " [ ] ", "[1,2,3]", '[1 , {"a":[1,2]} ,"x"]  ', "[[[]]]", '["]", "[,"]',
                                  "[1,]", "[1 2]", "[1]x", '{"a":1}', "[NaN]", "[", "[1", "[-Infinity]", "[1e999]"])
def test_an_array_parsed_in_slices_agrees_with_the_strict_parser(text: str) -> None:
    try:
        expected = strict_loads(text)
    except ValueError:
        expected = None
    try:
        found: object = [v for chunk in array_slices(text, limit=100, size=2) for v in chunk]
    except ValueError:
        found = None
    assert found == (expected if isinstance(expected, list) else None)


def test_an_array_past_the_limit_stops_parsing_there() -> None:
    text = "[" + ",".join(["{}"] * 10) + ", not json at all"
    with pytest.raises(TooMany):
        list(array_slices(text, limit=5, size=2))


@pytest.mark.parametrize("missing_id", [False, True])
def test_the_event_size_limit_is_exact_to_the_byte_with_or_without_a_message_id(missing_id: bool) -> None:
    """The size is taken from the encoding that also finds non-finite numbers (one walk, issue 20); an event
    given no messageId is measured again with the one it gets (36 more characters, a UUID)."""
    base = {"type": "track", "event": "E", "userId": "u", "properties": {"blob": ""}}
    if not missing_id:
        base["messageId"] = "m" * 36
    filler = MAX_EVENT_BYTES - json_size({**base, "messageId": "m" * 36})
    fits = {**base, "properties": {"blob": "é" * (filler // 2) + "x" * (filler % 2)}}
    assert json_size(validate(fits)) == MAX_EVENT_BYTES
    over = {**fits, "properties": {"blob": fits["properties"]["blob"] + "x"}}
    with pytest.raises(InvalidEvent, match="32 KB"):
        validate(over)


json_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8))
json_trees = st.recursive(json_leaves, lambda children: st.lists(children, max_size=3)
                          | st.dictionaries(st.text(max_size=4), children, max_size=3), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_trees)
def test_finite_size_is_json_size_where_every_number_is_finite(value: object) -> None:
    expected = json_size(value) if non_finite(value) is None else None
    assert finite_size(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_iterable_date_text_is_what_strftime_writes(moment: datetime) -> None:
    """Issue 20: the date text is formatted directly; strftime's is the reference (it does not pad years < 1000)."""
    assert iterable_text(moment.isoformat(), "p") == moment.strftime(ITERABLE_FORMAT)


SURROGATES = [
    ({"properties": {"v": "\ud800"}}, "properties.v"),
    ({"traits": {"name": "x\udfff"}}, "traits.name"),
    ({"properties": {"\ud800k": 1}}, "properties (a key)"),
    ({"properties": {"list": [1, {"a": "\udc00"}]}}, "properties.list[1].a"),
    ({"context": {"page": {"title": "\udbff"}}}, "context.page.title"),
]


@pytest.mark.parametrize(("extra", "where"), SURROGATES)
def test_an_unpaired_surrogate_rejects_its_event_alone_naming_the_field(extra: dict[str, object], where: str) -> None:
    """`"\\ud800"` is valid JSON syntax but not Unicode text: no UTF-8 request can carry it. Accepted with a 200,
    one such event made every delivery round fail for everyone; it is refused at intake, its event alone."""
    good = {"type": "track", "userId": "u1", "event": "E", "messageId": "good"}
    bad = {"type": "track", "userId": "u2", "event": "E", "messageId": "bad", **extra}
    rows, rejected = outbound_rows([good, bad], _options(), "d")
    assert [(r.key, r.status) for r in rows] == [("good", Status.PENDING), ("bad", Status.REJECTED)]
    assert [(r.index, r.error) for r in rejected] == [
        (1, f"{where}: contains an unpaired surrogate (not valid Unicode text)")]


def test_text_beyond_the_basic_plane_is_not_a_surrogate() -> None:
    event = {"type": "track", "userId": "u1", "event": "E", "messageId": "m", "properties": {"v": "é😀\U0010ffff"}}
    rows, rejected = outbound_rows([event], _options(), "d")
    assert rejected == [] and rows[0].payload["properties"]["v"] == "é😀\U0010ffff"


@pytest.mark.parametrize("raw", [
    {"type": "track", "userId": "a", "event": "Big", "messageId": "inf-1", "properties": {"x": -1e999}},
    {"type": "track", "userId": "a", "event": "Big", "messageId": "inf-2", "properties": {"deep": {"v": 1e400}}},
])
def test_a_rejected_event_altered_to_be_stored_is_never_decided_again(raw: dict[str, object]) -> None:
    """A fresh-eyes walk: `ledger retry --status rejected` re-decided an event rejected for a number too large,
    from its stored evidence (the number kept as the text "Infinity"), and made it pending: Iterable would have
    received "Infinity" as a string."""
    from sync.engine.remap import remap
    from sync.model import Direction, Row

    rows, rejected = outbound_rows([raw], outbound_options(make_config(ledger_url="sqlite:///unused.db")))
    assert len(rejected) == 1 and rows[0].status is Status.REJECTED
    stored = rows[0]
    row = Row(id=1, direction=Direction.OUTBOUND, key=stored.key, kind=stored.kind, user_key=stored.user_key,
              payload=stored.payload, status=Status.REJECTED, attempts=0, next_attempt_at=NOW, lease_owner=None,
              lease_expires_at=None, last_error=None, reason=stored.reason, received_at=NOW, updated_at=NOW,
              retry_from=NOW)
    decided, _ = outbound_rows([{k: v for k, v in stored.payload.items() if not k.startswith("_")}],
                               outbound_options(make_config(ledger_url="sqlite:///unused.db")))
    assert decided[0].status is Status.PENDING  # the evidence alone would pass: "Infinity" is a fine string
    refused = remap(row, decided[0])
    assert isinstance(refused, str) and "kept as evidence, not as received" in refused


def test_an_inbound_event_name_nobody_documents_counts_as_other_in_the_received_metric() -> None:
    """A review of the metrics: every new inbound eventName (any non-empty text is accepted) made a new series of
    sync_events_received_total; 300 names made 301 series."""
    from sync.engine.intake import _counts

    def hook(name: str) -> Any:
        return inbound_row({"email": "x@example.com", "eventName": name, "dataFields": {"messageId": name}},
                           event_names="segment", now=NOW)

    assert _counts(hook("customThing17"))[0] == ("received", "inbound", "other")
    assert _counts(hook("emailOpen"))[0] == ("received", "inbound", "emailOpen")
