"""JSON as it travels: strict parsing, non-finite numbers, and the byte sizes each upstream counts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec


def strict_loads(raw: bytes | str) -> Any:
    """JSON without the NaN and Infinity literals (not JSON). A number too large for a float
    (``1e999``) still parses, as infinity: ``non_finite`` finds it so the event can be refused."""
    return json.loads(raw, parse_constant=_not_json)


_ENCODER, _DECODER = msgspec.json.Encoder(), msgspec.json.Decoder()


def compact(value: Any) -> bytes:
    """Compact UTF-8 JSON, as a request body goes out (msgspec's encoder: about ten times Python's ``json``).
    A non-finite float becomes ``null`` (``NaN`` is not JSON: no upstream parses it; intake refuses such
    values anyway). Raises ``UnicodeEncodeError`` for an unpaired surrogate, ``RecursionError`` past
    msgspec's nesting limit, ``TypeError`` for a value JSON has no form for."""
    return _ENCODER.encode(value)


def stored_loads(raw: bytes | str) -> Any:
    """A JSON column's text as the ledger wrote it (the engine's ``json_deserializer``). msgspec reads it
    (about five times Python's ``json``); what msgspec refuses and Python's ``json`` wrote is read by
    ``json`` as before: ``NaN`` literals, an escaped unpaired surrogate (an inbound value Segment's library
    sends escaped), a number beyond a float's range."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


_STRICT = json.JSONDecoder(parse_constant=_not_json)
_SPACE = " \t\r\n"


class TooMany(ValueError):
    """A JSON array holds more elements than allowed (found while parsing: the rest is never parsed)."""


def array_slices(text: str, *, limit: int, size: int) -> Iterator[list[Any]]:
    """The elements of a JSON array text, ``size`` at a time, parsed as they are reached (strictly, as
    ``strict_loads``), so a caller can yield between slices and a huge array costs no more than ``limit``
    elements. Raises ``ValueError`` (``TooMany`` past ``limit``) or ``RecursionError``."""
    index = _skip(text, 0)
    if text[index:index + 1] != "[":
        raise ValueError("not a JSON array")
    index, count, chunk = _skip(text, index + 1), 0, []
    if text[index:index + 1] == "]":
        index += 1
    else:
        while True:
            value, index = _STRICT.raw_decode(text, index)
            count += 1
            if count > limit:
                raise TooMany(f"more than {limit} elements")
            chunk.append(value)
            if len(chunk) >= size:
                yield chunk
                chunk = []
            index = _skip(text, index)
            if text[index:index + 1] == "]":
                index += 1
                break
            if text[index:index + 1] != ",":
                raise ValueError(f"expected ',' or ']' at {index}")
            index = _skip(text, index + 1)
    if _skip(text, index) != len(text):
        raise ValueError(f"extra data at {index}")
    if chunk:
        yield chunk


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _SPACE:
        index += 1
    return index


def non_finite(value: Any) -> str | None:
    """The path of the first number inside ``value`` that is not finite (None when all are).

    Iterative: a body nested a thousand levels deep must not raise RecursionError here."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path or "value"
        if isinstance(item, dict):
            stack.extend(reversed([(v, f"{path}.{k}" if path else str(k)) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(item)]))
    return None


def deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays inside ``value`` nest more than ``limit`` levels (iterative: any depth; only
    containers are visited, so a typical event costs a few microseconds)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level >= limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return False


def finite(value: Any) -> Any:
    """``value`` with non-finite numbers replaced by their text, so it can be stored as evidence."""
    if non_finite(value) is None:
        return value
    return json.loads(json.dumps(value), parse_constant=str)


_FINITE_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)


def finite_size(value: Any) -> int | None:
    """``json_size(value)`` when every number inside is finite, else None; also None when the value cannot be
    encoded here (nested past the encoder's recursion): one encoding in C where ``non_finite`` then ``json_size``
    walk the value twice."""
    try:
        return len(_FINITE_COMPACT.encode(value).encode())
    except (ValueError, RecursionError):  # UnicodeEncodeError too: an unpaired surrogate (``unpaired_surrogate``)
        return None


def unpaired_surrogate(value: Any) -> str | None:
    """The path of the first string (a key or a value) holding an unpaired surrogate (``"\\ud800"`` in JSON is
    valid syntax but not Unicode text: UTF-8 cannot carry it, so no upstream could receive it), else None.
    Walks without recursion, so a deeply nested value cannot overflow the stack."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not utf8_text(item):
                return path or "value"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not utf8_text(key):
                    return f"{path or 'event'} (a key)"
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def utf8_text(text: str) -> bool:
    """Whether UTF-8 can carry ``text`` (no unpaired surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def json_size(value: Any) -> int:
    """UTF-8 bytes of compact JSON (what Iterable receives from us)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode(errors="surrogatepass"))


def segment_size(value: Any) -> int:
    """Bytes as segment-analytics-python measures and sends a message: ``json.dumps`` with its default
    ASCII escaping, so a non-ASCII character costs six bytes (``\\u00e9``), not two."""
    return len(json.dumps(value, default=str).encode(errors="surrogatepass"))


def unreadable_fields(fields: Mapping[str, Any]) -> str | None:
    """What is wrong with the first query or form field (name or text value) that no ledger could store or
    search (a NUL character, text that is not UTF-8: PostgreSQL refuses both), named without its value;
    None when every field is readable. Without this an operator's typo in a console filter reached the
    database and came back as a ledger outage."""
    for name, value in fields.items():
        if not storable(name):
            return "a field name holds a NUL character or is not UTF-8 text"
        if isinstance(value, str) and not storable(value):
            return f"{name[:40]!r} holds a NUL character or is not UTF-8 text"
    return None


def storable(text: str) -> bool:
    """Whether a string can be a database key: valid UTF-8 and no NUL (PostgreSQL refuses both)."""
    return "\x00" not in text and utf8_text(text)
