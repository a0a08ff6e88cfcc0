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


def non_finite(value: Any, path: str = "") -> str | None:
    """The path of the first number inside ``value`` that is not finite (None when all are)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "value"
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = non_finite(item, f"{path}[{index}]")
            if found:
                return found
    return None


def finite(value: Any) -> Any:
    """``value`` with non-finite numbers replaced by their text, so it can be stored as evidence."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def json_size(value: Any) -> int:
    """UTF-8 bytes of compact JSON (what Iterable receives from us)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode(errors="surrogatepass"))


def segment_size(value: Any) -> int:
    """Bytes as segment-analytics-python measures and sends a message: ``json.dumps`` with its default
    ASCII escaping, so a non-ASCII character costs six bytes (``\\u00e9``), not two."""
    return len(json.dumps(value, default=str).encode(errors="surrogatepass"))
