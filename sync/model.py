"""Plain values the ledger takes and returns."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


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
    also: str | None = None  # a second idempotency key (an inbound event's Iterable message): either one dedupes


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """A person as the ledger knows them: a linked userId (``None``: none) and their last consent seen
    outbound (category id -> granted; ``None``: never seen)."""

    user_id: str | None = None
    consent: dict[str, bool] | None = None
    email: str | None = None  # the email their latest user write named (``last_email``), when asked for


class Decider(Protocol):
    """Decides rows again, inside the transaction that records them, from what the ledger knows of their
    people (``sync.engine.intake.OnePerson``): ``asked`` names the identifiers to look up; with ``emails``, the
    ledger also finds each one's ``Known.email``."""

    emails: bool

    def asked(self, rows: Sequence[NewEvent]) -> list[str]: ...

    def __call__(self, rows: Sequence[NewEvent], found: Mapping[str, Known]) -> list[NewEvent]: ...


def known(asked: str, links: Mapping[str, str], consents_seen: Sequence[tuple[str, dict[str, bool]]],
          emails: Mapping[str, str] | None = None) -> Known:
    """``asked``'s userId and last consent, given ``links`` (identifier -> person) of the person's identifiers
    and the consents stored under them, newest first. Several userIds (an alias joined two): the smallest.
    ``emails``: person -> the email their latest user write named (``last_email``)."""
    person = links.get(asked)
    if person is None:
        return Known()
    mine = sorted(ident for ident, p in links.items() if p == person)
    user_ids = [ident.removeprefix("u:") for ident in mine if ident.startswith("u:")]
    seen = [categories for ident, categories in consents_seen if ident in mine]
    return Known(user_id=user_ids[0] if user_ids else None, consent=seen[0] if seen else None,
                 email=(emails or {}).get(person))


# The rows whose call leaves an email on the person's Iterable profile (SPEC section 5): identifies
# (``users/update``), the email changes an identify brings along and aliases (``users/updateEmail``); only
# rows pending or delivered count (a dead or skipped one changed nothing).
EMAIL_KINDS = ("identify", "email change", "alias")
EMAIL_STATUSES = (Status.PENDING, Status.DELIVERED)
_EMAIL_FIELDS = {"users/update": "email", "users/updateEmail": "newEmail"}  # sync.outbound.mapper's endpoints


def last_email(mapped: Mapping[str, Any] | None) -> str | None:
    """The email a recorded call (``IterableCall.frozen()``) leaves on its profile: a ``users/update``'s
    ``email`` (email projects name a user by it), a ``users/updateEmail``'s ``newEmail``; None otherwise."""
    body = mapped.get("body") if mapped else None
    field_name = _EMAIL_FIELDS.get(str(mapped.get("endpoint"))) if mapped else None
    value = body.get(field_name) if field_name and isinstance(body, Mapping) else None
    return value if isinstance(value, str) and value else None


# The times an operator can name (the commands' --since and --until, the console's replay form): within them
# every ledger stores a time and the arithmetic on it (a window, a cut-off) stays inside datetime's years.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
WANTED = "a date and time such as 2026-11-28T09:30 (UTC), between 1970 and 9000"


def named_time(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (UTC when it names no offset), between
    ``EARLIEST`` and ``LATEST``. Raises ValueError (``WANTED``) otherwise: a year-1 time with a positive
    offset, or year 9999's last hours with a negative one, is no time in UTC at all."""
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(WANTED) from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(WANTED)
    return moment


LATENCY_EDGES = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


DETAIL_CHARS = 1000


_EMAIL = re.compile(r"[^\s\"'<>,;:()\[\]{}]+@[^\s\"'<>,;:()\[\]{}]+")


_CLASSES = (  # (reason class, pattern), first match wins: a small, bounded label set
    ("disallowed event name", re.compile(r"disallowedEventNames", re.I)),
    ("invalid identifier", re.compile(r"invalid(Emails|UserIds|DataEmails|DataUserIds)|invalid email", re.I)),
    ("user not found", re.compile(r"notFound|does not exist|not found", re.I)),
    ("conflict", re.compile(r"conflict(Emails|UserIds)|HTTP 409", re.I)),
    ("type conflict", re.compile(r"type (mismatch|conflict)|mismatched type|locked.*type", re.I)),
    ("gave up retrying", re.compile(r"^gave up after", re.I)),
    ("upstream refused (4xx)", re.compile(r"HTTP 4\d\d", re.I)),
    ("mapping", re.compile(r"cannot map|cannot build|no longer sendable", re.I)),
    ("no identifier", re.compile(r"no email or userId|anonymous", re.I)),
    ("invalid input", re.compile(r"required|must be|expected|not a|invalid", re.I)),
    ("consent", re.compile(r"consent", re.I)),
)


def event_name(direction: Direction | str, kind: str, payload: Any) -> str | None:
    """The name an operator searches for: a track's ``event``, a page's or screen's ``name`` (a type when
    it has none), an inbound event's Iterable name. At most 255 characters."""
    if Direction(direction) is Direction.INBOUND:
        return kind[:255] or None
    body = payload if isinstance(payload, dict) else {}
    value = body.get("event") if kind == "track" else body.get("name") if kind in ("page", "screen") else None
    return (value.strip()[:255] or kind) if isinstance(value, str) else kind[:255] or None


def reason_class(reason: str | None) -> str:
    """A reason as one of a few classes (failure groups, metric labels)."""
    text = reason or ""
    return next((name for name, pattern in _CLASSES if pattern.search(text)), "other" if text else "none")


def scrub(text: str) -> str:
    """``text`` without email addresses (an upstream's answer may quote the person)."""
    return _EMAIL.sub("[email]", text)


def excerpt(answer: Any, *, named_by: str | None = None) -> str:
    """A short, person-free excerpt of an upstream answer: the list that named this item (``named_by``) and
    the answer's counts or its code and message."""
    parts = [f"{named_by} named this item"] if named_by else []
    if isinstance(answer, dict):
        shown = {k: answer[k] for k in ("code", "msg", "message", "successCount", "failCount",
                                        "disallowedEventNames") if k in answer}
        if isinstance(answer.get("failedUpdates"), dict):
            shown["failedUpdates"] = {k: len(v) for k, v in answer["failedUpdates"].items()
                                      if isinstance(v, list) and v}
        parts.append(json.dumps(shown, ensure_ascii=False, default=str, sort_keys=True))
    elif answer:
        parts.append(str(answer))
    return scrub("; ".join(parts))[:DETAIL_CHARS]


# why a sink settles a row without its frozen call dead (it never maps): recorded before the mapping was stored
# (revision 0004), and not given a call by revision 0009 (a dead row the mapping gives none, requeued as recorded)
UNDECIDED = ("cannot map the event: recorded before the mapping was stored, so it has no call to send; run "
             "`python -m sync migrate`, or decide it again with `ledger retry --remap`")
