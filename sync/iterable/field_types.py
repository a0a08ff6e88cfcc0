"""Iterable's field types, known before Iterable refuses a value (SPEC section 15, ``outbound.type_guard``).

Iterable fixes a data field's type with its first value; a later value of another type fails the request
with 400 ``RequestFieldsTypesMismatched`` whose ``params.validationErrors`` name each field and the type
Iterable has (as a public Iterable client parses it), or an item in ``failedUpdates.invalidData*``
(iterable-api-docs.json; Iterable's "Field types are fixed after first write"). ``GET /api/users/getFields``
answers ``{"fields": {"<dotted name>": "<type>"}}`` with the types ``string``, ``long``, ``double``,
``boolean``, ``date``, ``object``, ``nested`` (and ``geo_location``).

The rules here are pure: which type a value is, whether a locked type takes it, and the refusal reason
naming the field, its type in Iterable and the value's type. ``FieldTypes`` holds what the daemon knows:
user fields from getFields; user and event fields from Iterable's refusals and from the fields an accepted
bulk write created (``createdFields``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

NUMBERS = frozenset({"long", "double"})
TYPES = frozenset({"string", "long", "double", "boolean", "date", "object", "nested", "geo_location"})
_OFFSET = re.compile(r" ([+-]\d{2}:?\d{2})$")
GUARDED = ("users/update", "events/track")  # the calls whose ``dataFields`` Iterable types
# ``expectedType`` in a refusal is the search index's type name (a public Iterable client saw "date", "keyword")
ES_TYPES = {"keyword": "string", "text": "string", "string": "string", "long": "long", "integer": "long",
            "double": "double", "float": "double", "boolean": "boolean", "date": "date", "object": "object",
            "nested": "nested", "geo_point": "geo_location", "geo_location": "geo_location"}


def is_date(text: str) -> bool:
    """Whether Iterable reads ``text`` as a date: ``yyyy-MM-dd``, ISO 8601, or ``yyyy-MM-dd HH:mm:ss ZZ``."""
    for candidate in (text, _OFFSET.sub(r"\1", text)):
        try:
            datetime.fromisoformat(candidate)
            return True
        except ValueError:
            continue
    return False


def value_type(value: Any) -> str | None:
    """The Iterable type a value would fix (None for null and empty arrays: they fix nothing)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        kinds = {k for k in (value_type(v) for v in value) if k is not None}
        return ("nested" if "object" in kinds else sorted(kinds)[0]) if kinds else None
    return "string"


_SAME = {"string": (str,), "long": (int, float), "double": (int, float), "boolean": (bool,), "object": (dict,)}


def accepts(locked: str, value: Any) -> bool:
    """Whether a field Iterable typed ``locked`` takes ``value`` (unknown types take anything)."""
    if type(value) in _SAME.get(locked, ()):  # the usual case, first: intake pays this per field
        return True
    if value is None or locked not in TYPES or locked == "geo_location":
        return True
    if isinstance(value, list):
        return all(accepts(locked, v) for v in value if not (locked in ("nested", "object") and isinstance(v, dict)))
    kind = value_type(value)
    if locked in NUMBERS or locked == "date" and kind in NUMBERS:
        return kind in NUMBERS  # Iterable coerces one number type into the other; dates take epoch millis
    if locked == "date":
        return isinstance(value, str) and is_date(value)
    return kind == locked or locked == "nested" and kind == "object"


def paths(fields: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every field with its dotted name, an object's own fields after it."""
    for name, value in fields.items():
        path = f"{prefix}{name}"
        yield path, value
        if isinstance(value, dict):
            yield from paths(value, f"{path}.")


def refusal(types: Mapping[str, str], fields: Mapping[str, Any], scope: str) -> str | None:
    """Why Iterable would refuse ``fields`` (``scope`` says whose fields: "user" or "event NAME"), or None."""
    if not types:
        return None
    objects: list[tuple[str, Mapping[str, Any]]] = [("", fields)]
    while objects:
        prefix, current = objects.pop()
        for name, value in current.items():
            path = f"{prefix}{name}" if prefix else name
            locked = types.get(path)
            if locked is not None and not accepts(locked, value):
                got = "a date-less string" if locked == "date" and isinstance(value, str) else value_type(value)
                return (f"dataFields.{path}: Iterable has this {scope} field as {locked}, the value is {got} "
                        f"(Iterable fixes a field's type at its first write; outbound.type_guard)")
            if type(value) is dict:
                objects.append((f"{path}.", value))
    return None


@dataclass(slots=True, kw_only=True)
class FieldTypes:
    """What the daemon knows of one Iterable project's field types (in memory, refreshed hourly)."""

    user: dict[str, str] = field(default_factory=dict)
    events: dict[str, dict[str, str]] = field(default_factory=dict)
    refreshed: datetime | None = None

    def check(self, mapped: Mapping[str, Any] | None) -> str | None:
        """The refusal reason for a decided Iterable call (``IterableCall.frozen()``), or None."""
        if not mapped or mapped.get("endpoint") not in GUARDED:
            return None
        body = mapped.get("body") or {}
        fields = body.get("dataFields")
        if not isinstance(fields, dict) or not fields:
            return None
        if mapped["endpoint"] == "users/update":
            return refusal(self.user, fields, "user")
        name = str(body.get("eventName"))
        return refusal(self.events.get(name, {}), fields, f"event {name!r}")

    def merge_user(self, fields: Mapping[str, Any], now: datetime) -> int:
        """Take getFields' answer (``fields``: name -> type) over what is known; returns how many it listed."""
        known = {str(k): str(v) for k, v in fields.items() if isinstance(v, str)}
        self.user.update(known)
        self.refreshed = now
        return len(known)

    def learn(self, endpoint: str, body: Mapping[str, Any], created: Collection[str]) -> None:
        """An item Iterable accepted (``users/update`` or ``events/track`` body) in a bulk answer whose
        ``createdFields`` are ``created``: those fields' types are what this item's values fixed. (A field that
        existed before may be of a type the value only fits, a number in a ``date`` field: not learned here.)"""
        fields = body.get("dataFields")
        if endpoint not in GUARDED or not isinstance(fields, dict) or not created:
            return
        types = self.user if endpoint == "users/update" else self.events.setdefault(str(body.get("eventName")), {})
        for path, value in paths(fields):
            kind = "date" if isinstance(value, str) and is_date(value) else value_type(value)
            if kind is not None and path in created:
                types.setdefault(path, kind)

    def learn_refusal(self, errors: Any, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        """Iterable's ``RequestFieldsTypesMismatched`` answer (``params.validationErrors``: ``"<project>:::<field>"``
        -> ``expectedType``, ``category``) for a request of ``bodies``: each field's type as Iterable has it.
        Event fields go to the event names of the items that carry them. Returns the fields learned."""
        learned = []
        for key, error in (errors.items() if isinstance(errors, dict) else ()):
            expected = ES_TYPES.get(str(error.get("expectedType"))) if isinstance(error, dict) else None
            path = str(key).rpartition(":::")[2]
            if expected is None or not path:
                continue
            if error.get("category") == "event":
                for body in bodies:
                    fields = body.get("dataFields")
                    if isinstance(fields, dict) and any(p == path for p, _ in paths(fields)):
                        self.events.setdefault(str(body.get("eventName")), {})[path] = expected
            else:
                self.user[path] = expected
            learned.append(path)
        return learned
