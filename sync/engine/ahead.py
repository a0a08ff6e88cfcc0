"""What a claim made ahead may still send when its turn comes (SPEC section 4, "Time and stalls"). Pure.

A claim made while the previous round sends is read before that round's outcome is known and before later
ingest: by its turn a row may have been skipped or forgotten (a deletion), decided again, or its person merged
with another (their rows now share a key). ``current`` is the ledger's answer now: row id -> (person key,
still pending under our lease).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sync.model import Row


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    send: list[Row]  # still ours, with today's person key
    back: list[int]  # still ours, but their person's earlier row failed: released, they wait behind it
    gone: list[int]  # no longer ours to send (skipped, forgotten, decided again, lease lost): left alone


def turn(rows: Sequence[Row], current: Mapping[int, tuple[str | None, bool]], failed: Collection[int],
         failed_keys: Collection[str]) -> Turn:
    """Split the rows claimed ahead. ``failed`` are the ids of rows whose retryable failure in the last round
    holds their person back; ``failed_keys`` the keys they were claimed under. A merge since then is followed:
    the person is whoever holds that row now."""
    behind = set(failed_keys) | {key for i in failed if (key := current.get(i, (None, False))[0])}
    send, back, gone = [], [], []
    for row in rows:
        key, mine = current.get(row.id, (row.user_key, False))
        if not mine:
            gone.append(row.id)
        elif key in behind or row.user_key in behind:
            back.append(row.id)
        else:
            send.append(row if key == row.user_key else dataclasses.replace(row, user_key=key))
    return Turn(send=send, back=back, gone=gone)
