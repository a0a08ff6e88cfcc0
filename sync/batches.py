"""Cutting items into requests under a count and a byte limit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def strict_loads(raw: bytes | str) -> Any:
    """JSON without NaN and Infinity (not JSON, and PostgreSQL refuses to store them)."""
    return json.loads(raw, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def json_size(value: Any) -> int:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode(errors="surrogatepass"))


def chunks(
    items: Sequence[T], *, max_items: int, max_bytes: int, size_of: Callable[[T], int], overhead: int = 64
) -> Iterator[list[T]]:
    """Consecutive runs of ``items``, each at most ``max_items`` long and ``max_bytes`` big.

    An item larger than ``max_bytes`` on its own still gets a chunk of its own (the upstream
    rejects it, and only it).
    """
    chunk: list[T] = []
    size = overhead
    for item in items:
        item_size = size_of(item) + 1
        if chunk and (len(chunk) >= max_items or size + item_size > max_bytes):
            yield chunk
            chunk, size = [], overhead
        chunk.append(item)
        size += item_size
    if chunk:
        yield chunk
