"""Times as Segment reads them, and as Iterable writes them (SPEC section 13). Pure.

Segment's ISO reader (segmentio/isodate, ``lib/index.js``) takes a calendar date with or without dashes,
optionally a month or a year alone, then ``T`` or a space and ``HH:mm`` with optional seconds and a fraction of
any length (``.`` or ``,``), and an offset ``Z``, ``+HH``, ``+HHmm`` or ``+HH:mm``. ``dateutil``'s ISO parser reads
those forms and more (week dates, an hour alone): isodate's own grammar, below, keeps it to Segment's forms,
and the library computes the value (calendar, offsets); what it cannot represent is "unreadable". isodate's test
cases are in ``tests/unit/segment/test_parity.py``.

A device's clock is corrected as Segment documents it ("Timestamps, Segment spec": ``timestamp = receivedAt -
(sentAt - originalTimestamp)``): ``event_time`` returns that value, and ``stamp`` writes ``receivedAt`` (and a
batch's ``sentAt``) onto each event at intake so that the decision is a function of the stored payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from dateutil.parser import isoparser

from sync.errors import InvalidEvent

ITERABLE_FORMAT = "%Y-%m-%d %H:%M:%S +00:00"
_T_PARSER, _SPACE_PARSER = isoparser(sep="T"), isoparser(sep=" ")
# segmentio/isodate lib/index.js ``matcher``: the forms Segment accepts (the value is the library's business)
_SEGMENT_FORMS = re.compile(r"\d{4}(?:-?\d{2}(?:-?\d{2})?)?(?:[ T]\d{2}:?\d{2}(?::?\d{2}(?:[,.]\d+)?)?"
                            r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?")
_UNREADABLE = "not a time that can be read (an ISO-8601 date-time that exists, in years 1 to 9999 in UTC)"
# Iterable writes offsets after a space ("2016-12-02 20:21:04 +00:00": system webhooks and export data.json,
# Iterable API docs "System Webhooks" samples; ``yyyy-MM-dd HH:mm:ss ZZ``, "Iterable's date format") and
# sometimes "+0000"; the Airbyte Iterable source's cursor formats add fractions and a "T" form.
_SPACED_OFFSET = re.compile(r"\s+(Z|[+-]\d{2}(?::?\d{2})?)$")
# the shape of a full extended date-time (its value is the parser's business): text that merely starts with one
# ("2024-05-01 10:00 stand-up") is text
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_iso(value: Any) -> datetime | None:
    """An aware UTC datetime from a string Segment's ISO reader accepts (no offset means UTC); None for
    anything else, including dates that exist only outside UTC's year range (``0001-01-01T00:00+01:00``)."""
    return _parsed(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)  # a batch repeats its sentAt and receivedAt; one event's times are read several times
def _parsed(value: str) -> datetime | None:
    if not _SEGMENT_FORMS.fullmatch(value):
        return None
    try:
        try:  # Python's own ISO reader (C) agrees with dateutil's where it reads a form, at a tenth of its cost
            parsed = datetime.fromisoformat(value)
        except ValueError:  # a year or a month alone, 24:00
            parsed = (_SPACE_PARSER if " " in value else _T_PARSER).isoparse(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def is_date_time(value: Any) -> bool:
    """Whether a string is a full ISO date-time (date and time, dashes), the kind a data field converts."""
    return isinstance(value, str) and _DATE_TIME.fullmatch(value) is not None


def read_time(event: Mapping[str, Any], name: str, path: str | None = None) -> datetime | None:
    """The time at ``event[name]``: None when absent or null; raises ``InvalidEvent`` naming ``path`` (or
    ``name``) when it is there and cannot be read."""
    value = event.get(name)
    if value is None:
        return None
    parsed = parse_iso(value)
    if parsed is None:
        raise InvalidEvent(f"{path or name}: {_UNREADABLE}")
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTime:
    """When an event happened, and how that was decided (``check-config --try`` shows it)."""

    at: datetime
    original: datetime | None = None
    sent_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def corrected(self) -> bool:
        return self.sent_at is not None

    def explain(self) -> str:
        if self.corrected:
            return (f"timestamp {self.at.isoformat()}: receivedAt {_iso(self.received_at)} - (sentAt "
                    f"{_iso(self.sent_at)} - originalTimestamp {_iso(self.original)}) (device clock corrected)")
        if self.original is None:
            return f"timestamp {self.at.isoformat()}: receivedAt (the event has no timestamp)"
        return f"timestamp {self.at.isoformat()}: as sent (no sentAt to correct the device clock with)"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "-"


def event_time(event: Mapping[str, Any]) -> EventTime | None:
    """The event's time as Segment computes it; None when it has none. ``originalTimestamp`` (an event that
    Segment already processed) is the device's time, else ``timestamp``. Raises ``InvalidEvent`` naming the
    field that cannot be read, or ``timestamp`` when the correction leaves the representable range."""
    original = read_time(event, "originalTimestamp") or read_time(event, "timestamp")
    return _corrected(original, read_time(event, "sentAt"), read_time(event, "receivedAt"))


def checked_time(event: Mapping[str, Any], names: tuple[str, ...]) -> EventTime | None:
    """``read_time`` of each of ``names`` in turn (the first unreadable one raises), then ``event_time`` from the
    values read (``names`` holds the four time fields): each field is read once."""
    times = {name: read_time(event, name) for name in names}
    original = times["originalTimestamp"] or times["timestamp"]
    return _corrected(original, times["sentAt"], times["receivedAt"])


def _corrected(original: datetime | None, sent_at: datetime | None, received_at: datetime | None
               ) -> EventTime | None:
    if original is None:
        return EventTime(at=received_at, received_at=received_at) if received_at else None
    if sent_at is None or received_at is None:
        return EventTime(at=original, original=original, received_at=received_at)
    try:
        corrected = received_at - (sent_at - original)
    except OverflowError:
        raise InvalidEvent(f"timestamp: {_UNREADABLE} once corrected with sentAt and receivedAt") from None
    return EventTime(at=corrected, original=original, sent_at=sent_at, received_at=received_at)


def stamp(event: Any, *, received_at: datetime, sent_at: Any = None, overwrite: bool) -> Any:
    """The event with ``receivedAt`` (the daemon's clock; ``overwrite``: as Segment's API does, else only
    when absent, for events Segment already stamped) and the batch's ``sentAt`` where it has none."""
    if not isinstance(event, dict):
        return event
    stamped = dict(event)
    if overwrite or stamped.get("receivedAt") is None:
        stamped["receivedAt"] = _segment_text(received_at, received_at.utcoffset())
    if sent_at is not None and stamped.get("sentAt") is None:
        stamped["sentAt"] = sent_at
    return stamped


@lru_cache(maxsize=8)  # every event of a request is stamped with the same time
def _segment_text(moment: datetime, offset: timedelta | None) -> str:
    """``moment`` as Segment writes a time; ``offset`` is part of the key (equal instants in two zones are
    equal datetimes, but not the same text)."""
    return moment.isoformat().replace("+00:00", "Z")


def iterable_text(value: str, path: str) -> str:
    """An ISO date-time as Iterable's ``yyyy-MM-dd HH:mm:ss +00:00``; raises ``InvalidEvent`` naming
    ``path`` when it looks like one but cannot be read (a 30 February, a year 1 with an offset)."""
    parsed = parse_iso(value)
    if parsed is None:
        raise InvalidEvent(f"{path}: {_UNREADABLE}")
    if parsed.year < 1000:  # strftime's %Y does not pad these (glibc): keep its text
        return parsed.strftime(ITERABLE_FORMAT)
    return (f"{parsed.year:04d}-{parsed.month:02d}-{parsed.day:02d} "  # strftime's text, at a third of its cost
            f"{parsed.hour:02d}:{parsed.minute:02d}:{parsed.second:02d} +00:00")


def iterable_time(value: Any) -> datetime | None:
    """A time as Iterable sends it (webhooks' and exports' ``createdAt``) as aware UTC; None when unreadable.

    Forms: ``yyyy-MM-dd HH:mm:ss +00:00`` (webhook and export samples), with a fraction, ``+0000`` or no
    offset (export parameters are UTC), ISO with ``T``; epoch seconds or milliseconds as a number or digits
    (the Airbyte Iterable source reads epoch-ms ``createdAt``)."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) >= 9:
        value = int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(value)
    if not isinstance(value, str):
        return None
    return parse_iso(_SPACED_OFFSET.sub(r"\1", value.strip()))


def _epoch(value: float) -> datetime | None:
    seconds = value / 1000 if abs(value) > 10**11 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
