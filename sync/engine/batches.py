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


def by_person(
    items: Sequence[T], *, person: Callable[[T], str], max_items: int, max_bytes: int, size_of: Callable[[T], int],
    overhead: int = 64,
) -> tuple[list[list[T]], bool]:
    """Requests under the same limits as ``chunks``, each person's items kept together and in their order, so
    the requests may be in flight at once without one person's items overtaking each other.

    Returns the chunks and whether they are independent (no person in two of them): a person with more items
    than one request holds gets consecutive chunks of their own, and then the chunks must go one after another.
    """
    people: dict[str, list[T]] = {}
    for item in items:
        people.setdefault(person(item), []).append(item)
    out: list[list[T]] = []
    chunk: list[T] = []
    size, independent = overhead, True
    for mine in people.values():
        mine_size = sum(size_of(item) + 1 for item in mine)
        if chunk and (len(chunk) + len(mine) > max_items or size + mine_size > max_bytes):
            out.append(chunk)
            chunk, size = [], overhead
        if len(mine) > max_items or overhead + mine_size > max_bytes:
            parts = list(chunks(mine, max_items=max_items, max_bytes=max_bytes, size_of=size_of, overhead=overhead))
            independent = independent and len(parts) == 1
            out.extend(parts)
            continue
        chunk.extend(mine)
        size += mine_size
    if chunk:
        out.append(chunk)
    return out, independent
