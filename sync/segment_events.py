"""Segment-spec events as they arrive: shape checks, batch merging, identifiers and dates.

Shared by the outbound mapper and the ingress; pure functions over plain dicts.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sync.errors import InvalidEvent
from sync.wire import json_size, non_finite

TYPES = ("identify", "track", "page", "screen", "group", "alias", "delete")  # delete: Webhooks (Classic)
MAX_EVENT_BYTES = 32 * 1024
MAX_MESSAGE_ID = 100

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def is_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 254 and _EMAIL.match(value) is not None and storable(value)


def storable(text: str) -> bool:
    """Whether a string can be a database key: valid UTF-8 and no NUL (PostgreSQL refuses both)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def require_storable(event: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        value = event.get(name)
        if isinstance(value, str) and not storable(value):
            raise InvalidEvent(f"{name}: contains a NUL character or an unpaired surrogate")


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text_id(value: Any) -> str | None:
    """A Segment id (userId, anonymousId ...) as text; numbers are allowed, empty is absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


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
        raise InvalidEvent(f"type: must be one of {', '.join(TYPES)}, got {str(kind)[:40]!r}")
    for name in ("context", "integrations", "properties", "traits"):
        if name in event and event[name] is not None and not isinstance(event[name], dict):
            raise InvalidEvent(f"{name}: expected an object")
    require_storable(event, ("messageId", "userId", "anonymousId", "previousId", "event", "name"))
    overflow = non_finite(event)
    if overflow:
        raise InvalidEvent(f"{overflow}: a number too large to represent (not finite)")
    if kind == "track" and not (isinstance(event.get("event"), str) and event["event"].strip()):
        raise InvalidEvent("event: required for track (a non-empty string)")
    if "timestamp" in event and event["timestamp"] is not None and parse_time(event["timestamp"]) is None:
        raise InvalidEvent("timestamp: not an ISO-8601 date-time")
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        event = {**event, "messageId": str(uuid.uuid4())}
    elif not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID:
        raise InvalidEvent(f"messageId: must be a string of at most {MAX_MESSAGE_ID} characters")
    if json_size(event) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event: larger than Segment's {MAX_EVENT_BYTES // 1024} KB limit per event")
    checked: dict[str, Any] = event
    return checked


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string (naive means UTC); None if it is not one."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value.strip()):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_time(event: dict[str, Any]) -> datetime | None:
    return parse_time(event.get("timestamp")) or parse_time(event.get("originalTimestamp"))


def iterable_dates(value: Any) -> Any:
    """ISO date-times anywhere inside become ``YYYY-MM-DD HH:mm:ss +00:00``; date-only strings stay."""
    if isinstance(value, dict):
        return {k: iterable_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iterable_dates(v) for v in value]
    if isinstance(value, str):
        parsed = parse_time(value)
        if parsed is not None:
            return parsed.strftime("%Y-%m-%d %H:%M:%S +00:00")
    return value
