"""Plain values the ledger takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Status(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    HELD = "held"  # an anonymous event waiting for its visitor to be identified (SPEC section 11)


TERMINAL = (Status.DELIVERED, Status.DEAD, Status.SKIPPED, Status.REJECTED)

@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event as ingress records it. ``key`` is the idempotency key, unique per direction."""

    direction: Direction
    key: str
    kind: str
    payload: dict[str, Any]
    user_key: str | None = None  # the ordering key when ``identities`` is empty
    identities: tuple[str, ...] = ()  # ``sync.people`` identifiers: the ledger resolves them to one person
    status: Status = Status.PENDING
    reason: str | None = None
    mapped: dict[str, Any] | None = None  # the upstream call decided at intake (frozen: retries send it as is)
    mapping_digest: str | None = None
    label: str | None = None  # a bounded metric label for a skip (the config key that decided it); not stored
    forgets: bool = False  # a deletion: the ledger forgets this person's other rows when it records it
    replaces: tuple[str, ...] = ()  # keys of held rows this row releases: they become skipped ("released as ...")
    consent: dict[str, bool] | None = None  # end-user consent the event carried (category -> granted), if any


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One ledger row as stored."""

    id: int
    direction: Direction
    key: str
    kind: str
    user_key: str | None
    payload: dict[str, Any]
    status: Status
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    reason: str | None
    received_at: datetime
    updated_at: datetime
    retry_from: datetime  # start of the retry window: received_at, or the last requeue
    mapped: dict[str, Any] | None = None
    mapping_digest: str | None = None
    name: str | None = None  # the event's name (``history.event_name``); None on rows older than revision 0008


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """What a worker asks for: due rows of one direction, leased to ``owner``."""

    direction: Direction
    owner: str
    limit: int
    lease_seconds: float
    in_flight: frozenset[int] = frozenset()  # rows this owner sends before the claimed ones: they do not hold back


@dataclass(frozen=True, slots=True)
class Queued:
    """One pending row of a person's queue, as a claim sees it: may it go now (due, and not leased)?"""

    id: int
    free: bool


def claimable(queue: Sequence[Queued], in_flight: frozenset[int] = frozenset()) -> list[int]:
    """The ids of one person's pending rows (``queue``, in id order) that a claim may take: the free rows
    before the first that must go first (leased by another claim, or not due yet). Rows ``in_flight`` go out
    before anything this claim takes, so they hold nothing back."""
    taken = []
    for row in queue:
        if row.id in in_flight:
            continue
        if not row.free:
            break
        taken.append(row.id)
    return taken


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try of one row, as its history keeps it (SPEC section 12): what was called, what came back."""

    row_id: int
    direction: Direction
    outcome: str  # "delivered", "retry" or "dead"
    endpoint: str | None = None  # the endpoint actually called (the bulk one when batched)
    http_status: int | None = None  # None: no answer (timeout, connection refused) or not sent
    detail: str | None = None  # the error and an excerpt of the upstream's answer about this row
    reason: str | None = None  # the error alone (a dead letter's reason: its class labels metrics and groups)
    next_attempt_at: datetime | None = None
    name: str | None = None  # the event name (failure counters per event name)
    latency: float | None = None  # seconds from received to delivered (delivered rows)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """The outcome of one delivery round, applied to the ledger in one transaction."""

    delivered: tuple[int, ...] = ()
    retry: tuple[tuple[int, datetime, str], ...] = ()
    dead: tuple[tuple[int, str], ...] = ()
    released: tuple[int, ...] = ()
    forgotten: tuple[int, ...] = ()  # delivered deletions: their own payload becomes a tombstone too
    attempts: tuple[Attempt, ...] = ()  # the history of this round (``sync.ledger.history.record``)

    @property
    def size(self) -> int:
        return len(self.delivered) + len(self.retry) + len(self.dead) + len(self.released)


@dataclass(frozen=True, slots=True, kw_only=True)
class Remapped:
    """A row decided again under the current mapping (``ledger retry --remap``); ``was`` guards the update."""

    id: int
    was: Status
    status: Status
    mapped: dict[str, Any] | None
    mapping_digest: str | None
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Downtime:
    """A span in which a direction could not deliver (``ended_at`` None: still going on)."""

    direction: Direction
    kind: str  # "paused" (credentials refused) or "ledger" (the ledger was unreachable)
    reason: str
    started_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """What the gauges show: pending rows and the oldest pending receive time, per direction."""

    counts: dict[str, int] = field(default_factory=dict)
    oldest: dict[str, datetime] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_pending: dict[str, datetime] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
