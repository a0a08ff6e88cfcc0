"""JSON as it travels: strict parsing, non-finite numbers, and the byte sizes each upstream counts."""

from __future__ import annotations

import json
import math
from typing import Any


def strict_loads(raw: bytes | str) -> Any:
    """JSON without the NaN and Infinity literals (not JSON). A number too large for a float
    (``1e999``) still parses, as infinity: ``non_finite`` finds it so the event can be refused."""
    return json.loads(raw, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


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
    """Whether objects and arrays inside ``value`` nest more than ``limit`` levels (iterative: any depth)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level >= limit:
                return True
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def finite(value: Any) -> Any:
    """``value`` with non-finite numbers replaced by their text, so it can be stored as evidence."""
    if non_finite(value) is None:
        return value
    return json.loads(json.dumps(value), parse_constant=str)


def json_size(value: Any) -> int:
    """UTF-8 bytes of compact JSON (what Iterable receives from us)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode(errors="surrogatepass"))


def segment_size(value: Any) -> int:
    """Bytes as segment-analytics-python measures and sends a message: ``json.dumps`` with its default
    ASCII escaping, so a non-ASCII character costs six bytes (``\\u00e9``), not two."""
    return len(json.dumps(value, default=str).encode(errors="surrogatepass"))
