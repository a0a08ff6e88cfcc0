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
) -> tuple[list[list[T]], list[T], bool]:
    """Requests under the same limits as ``chunks`` and no more of them, each person's items kept together
    and in their order, so the requests may be in flight at once without a person's items overtaking each other.

    Returns the requests, the items of the people that did not fit in them (left whole, in order: they wait
    for a later round), and whether the requests are independent. A person with more items than one request
    holds cannot be kept together: then everything is cut as ``chunks`` cuts it, to go one request after
    another, and nobody is left out.
    """
    people: dict[str, list[T]] = {}
    for item in items:
        people.setdefault(person(item), []).append(item)
    sizes = {key: sum(size_of(item) + 1 for item in mine) for key, mine in people.items()}
    cut = list(chunks(items, max_items=max_items, max_bytes=max_bytes, size_of=size_of, overhead=overhead))
    if any(len(mine) > max_items or overhead + sizes[key] > max_bytes for key, mine in people.items()):
        return cut, [], len(cut) <= 1
    out: list[list[T]] = [[] for _ in cut]
    used = [overhead] * len(cut)
    left: list[T] = []
    for key, mine in people.items():  # first fit, in received order: the people left out are the latest
        fits = next((n for n, chunk in enumerate(out)
                     if len(chunk) + len(mine) <= max_items and used[n] + sizes[key] <= max_bytes), None)
        if fits is None:
            left.extend(mine)
            continue
        out[fits].extend(mine)
        used[fits] += sizes[key]
    return [chunk for chunk in out if chunk], left, True
