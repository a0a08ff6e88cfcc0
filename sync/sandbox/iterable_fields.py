"""The fake Iterable's field types: a field's type is fixed by its first value (Iterable's own rule).

Written from Iterable's docs, never from the daemon's code: the types are the names ``GET
/api/users/getFields`` answers with (``string``, ``long``, ``double``, ``boolean``, ``date``, ``object``,
``nested``); a nested object's fields are named with dots (``address.city``); an array takes its elements'
type (an array of objects is ``nested``). Dates are strings in Iterable's formats (``yyyy-MM-dd HH:mm:ss
ZZ``, ISO 8601 with a time, or ``yyyy-MM-dd``). Numbers fit either number type, and a ``date`` field also
takes epoch milliseconds (as Elasticsearch, under Iterable, does).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}"
                  r"(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?\s?(?:Z|[+-]\d{2}:?\d{2})?)?$")
NUMBERS = ("long", "double")


def kind_of(value: Any) -> str | None:
    """The type a first write of ``value`` gives its field (None: no type is fixed)."""
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
        kinds = {k for k in (kind_of(v) for v in value) if k is not None}
        if not kinds:
            return None
        return "nested" if "object" in kinds else sorted(kinds)[0]
    return "date" if isinstance(value, str) and DATE.match(value) else "string"


def fits(locked: str, value: Any) -> bool:
    """Whether Iterable takes ``value`` into a field whose type is ``locked``."""
    kind = kind_of(value)
    if kind is None or kind == locked:
        return True
    if isinstance(value, list):
        return all(fits(locked, v) for v in value)
    if locked in NUMBERS:
        return kind in NUMBERS
    if locked == "date":
        return kind in NUMBERS
    if locked == "string":
        return kind == "date"  # a date-like string is still a string
    return locked == "nested" and kind == "object"


def leaves(fields: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every field of ``fields`` with its dotted name, objects and their fields alike."""
    for name, value in fields.items():
        path = f"{prefix}{name}"
        yield path, value
        if isinstance(value, dict):
            yield from leaves(value, f"{path}.")


def mismatches(types: dict[str, str], fields: dict[str, Any]) -> list[tuple[str, str, str | None, Any]]:
    """Every field of ``fields`` whose value ``types`` refuses: (dotted name, its type, the value's, the value)."""
    return [(path, types[path], kind_of(value), value) for path, value in leaves(fields)
            if path in types and not fits(types[path], value)]


def lock(types: dict[str, str], fields: dict[str, Any]) -> list[str]:
    """Fix the type of every field written here for the first time; returns those fields (``createdFields``)."""
    created = []
    for path, value in leaves(fields):
        kind = kind_of(value)
        if kind is not None and path not in types:
            types[path] = kind
            created.append(path)
    return created
