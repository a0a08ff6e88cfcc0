"""Segment-spec events as they arrive: shape checks, batch merging, identifiers and dates.

Shared by the outbound mapper and the ingress; pure functions over plain dicts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sync.errors import InvalidEvent
from sync.iterable.identifiers import has_control
from sync.iterable.identifiers import (
    is_email as is_email,  # re-exported: the rules live in sync.iterable.identifiers
)
from sync.segment import timestamps
from sync.wire import finite_size, json_size, non_finite, storable, unpaired_surrogate

TYPES = ("identify", "track", "page", "screen", "group", "alias", "delete")  # delete: Webhooks (Classic)
MAX_EVENT_BYTES = 32 * 1024
MAX_MESSAGE_ID = 100

TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
ID_FIELDS = ("userId", "anonymousId", "previousId")


def require_storable(event: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        value = event.get(name)
        if isinstance(value, str) and not storable(value):
            raise InvalidEvent(f"{name}: contains a NUL character or an unpaired surrogate")


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text_id(value: Any) -> str | None:
    """A Segment id (userId, anonymousId ...) as text; numbers are allowed (written as JavaScript writes them,
    ``js_number``), empty is absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return js_number(value)
    return None


def js_number(value: int | float) -> str:
    """A number as JavaScript's ``String(n)`` writes it (ECMA-262 Number::toString): Segment's libraries and
    pipeline are JavaScript, and a Java or Kotlin client that sends the id ``12345`` as the double ``12345.0``
    names the same person. The shortest digits that read back as the number (as Python's ``repr``), in full
    from 1e-7 (excluded) to 1e21 (excluded), else with an exponent: ``12345.0`` -> ``"12345"``, ``1e20`` ->
    ``"100000000000000000000"``, ``1.5e-06`` -> ``"0.0000015"``, ``1e21`` -> ``"1e+21"``, ``1e-07`` ->
    ``"1e-7"``, ``-0.0`` -> ``"0"``. Raises ``ValueError`` for a non-finite float."""
    if isinstance(value, int):
        return str(value)
    digits = Decimal(repr(value))  # ValueError-free for finite floats; NaN and infinity are refused below
    if not digits.is_finite():
        raise ValueError("not a finite number")
    if digits.is_zero():
        return "0"
    exponent = digits.adjusted()
    if -7 < exponent < 21:
        return format(digits.normalize(), "f")
    mantissa = format(digits.scaleb(-exponent).normalize(), "f")
    return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def merge_batch_defaults(event: dict[str, Any], context: Any, integrations: Any) -> dict[str, Any]:
    """Top-level ``context`` / ``integrations`` of a batch merge into each event (event wins)."""
    merged = dict(event)
    for name, shared in (("context", context), ("integrations", integrations)):
        if isinstance(shared, dict) and shared:
            merged[name] = {**shared, **as_dict(event.get(name))}
    return merged


def validate(event: Any) -> dict[str, Any]:
    """Check an event's shape; return it with a ``messageId``. Raises ``InvalidEvent`` naming the field."""
    if not isinstance(event, dict):
        raise InvalidEvent("event: expected a JSON object")
    kind = event.get("type")
    if kind not in TYPES:
        got = "nothing" if kind is None else repr(str(kind)[:40])
        hint = " (an Iterable webhook? it goes to /iterable/webhook; `check-config --try` needs --direction inbound)" \
            if kind is None and "eventName" in event else ""
        raise InvalidEvent(f"type: must be one of {', '.join(TYPES)}, got {got}{hint}")
    for name in ("context", "integrations", "properties", "traits"):
        if name in event and event[name] is not None and not isinstance(event[name], dict):
            raise InvalidEvent(f"{name}: expected an object")
    require_storable(event, ("messageId", "userId", "anonymousId", "previousId", "event", "name"))
    size = finite_size(event)  # None: a number is not finite (or the event is too deep to encode: see below)
    overflow = non_finite(event) if size is None else None
    if overflow:
        raise InvalidEvent(f"{overflow}: a number too large to represent (not finite)")
    if size is None and (where := unpaired_surrogate(event)):
        raise InvalidEvent(f"{where}: contains an unpaired surrogate (not valid Unicode text)")
    if kind == "track" and not (isinstance(event.get("event"), str) and event["event"].strip()):
        raise InvalidEvent("event: required for track (a non-empty string)")
    timestamps.checked_time(event, TIME_FIELDS)  # each readable, and the clock correction representable too
    for name in ID_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and has_control(value):
            raise InvalidEvent(f"{name}: contains a control character")
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise InvalidEvent(f"{name}: expected a string (or a number), got {_json_type(value)}")
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        event, size = {**event, "messageId": str(uuid.uuid4())}, None
    elif not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID:
        raise InvalidEvent(f"messageId: must be a string of at most {MAX_MESSAGE_ID} characters")
    if (json_size(event) if size is None else size) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event: larger than Segment's {MAX_EVENT_BYTES // 1024} KB limit per event")
    checked: dict[str, Any] = event
    return checked


def _json_type(value: Any) -> str:
    return ("a boolean" if isinstance(value, bool) else "an object" if isinstance(value, dict)
            else "an array" if isinstance(value, list) else type(value).__name__)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string as Segment reads it (naive means UTC); None otherwise."""
    return timestamps.parse_iso(value)


def event_time(event: dict[str, Any]) -> datetime | None:
    """When the event happened, corrected for the device clock (``sync.segment.timestamps.event_time``)."""
    found = timestamps.event_time(event)
    return found.at if found else None


def iterable_dates(value: Any, path: str = "") -> Any:
    """ISO date-times anywhere inside become ``YYYY-MM-DD HH:mm:ss +00:00``; date-only strings stay. Raises
    ``InvalidEvent`` naming the path of a date-time that cannot be read (a 30 February, year 1 with an offset)."""
    if isinstance(value, dict):
        return {k: _dated(v, path, key=k) if isinstance(v, dict | list | str) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_dated(v, path, index=i) if isinstance(v, dict | list | str) else v for i, v in enumerate(value)]
    if timestamps.is_date_time(value):
        return timestamps.iterable_text(value, path or "value")
    return value


_AT_INDEX = object()


def _dated(value: Any, path: str, *, key: Any = _AT_INDEX, index: int = 0) -> Any:
    """``iterable_dates`` of the value at ``key`` (else ``index``) under ``path``; a string that is no date-time
    is returned before its path is spelled (most values of an event)."""
    if isinstance(value, str) and not timestamps.is_date_time(value):
        return value
    if key is _AT_INDEX:
        return iterable_dates(value, f"{path}[{index}]")
    return iterable_dates(value, f"{path}.{key}" if path else str(key))
