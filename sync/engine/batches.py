"""Cutting items into requests under a count and a byte limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


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
