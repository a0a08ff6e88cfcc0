"""Intake: turn incoming events into ledger rows and record them (the path every 200 waits on).

Classification is pure (``outbound_rows``, ``inbound_row``); ``Intake.record`` commits and counts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sync import people
from sync.config import Config
from sync.engine.holding import HeldRows, Holds
from sync.engine.remap import NOT_AS_RECEIVED
from sync.errors import InvalidEvent, LedgerUnavailable, Overloaded, SyncError
from sync.inbound import mapper as inbound
from sync.inbound import people as inbound_people
from sync.inbound.mapper import SPEC_MAPPING
from sync.iterable.field_types import FieldTypes
from sync.mapping.rules import InboundMapping
from sync.metrics import Metrics
from sync.model import Decider, Direction, Known, NewEvent, Status
from sync.outbound import consent, email_changes
from sync.outbound import mapper as outbound
from sync.outbound.anonymous import RELEASED_IDENTITY
from sync.outbound.companions import derived
from sync.segment import spec as segment_events
from sync.wire import deeper_than, finite, non_finite, storable

log = logging.getLogger("sync.engine.intake")

# objects and arrays nested deeper than this in one event are refused: no mapping needs them, and a value
# near the JSON parser's own limit (about 1,000 levels) would make the mapper or the ledger's encoder recurse
# past Python's stack
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    index: int
    error: str


def outbound_options(config: Config) -> outbound.Options:
    """The outbound mapper's options from the config (project type, nested merge, the mapping keys)."""
    push = config.iterable.push
    apps = {"": push.application_name, "APNS": push.apns_application_name,
            "APNS_SANDBOX": push.apns_application_name, "GCM": push.gcm_application_name}
    return outbound.Options(project_type=config.iterable.project_type,
                            merge_nested_objects=config.outbound.merge_nested_objects, mapping=config.outbound.mapping,
                            deletion=config.outbound.deletion, subscriptions=config.outbound.subscriptions,
                            push_apps={k: v for k, v in apps.items() if v},
                            consent_categories=config.consent.outbound_categories,
                            keep_consent=bool(config.consent.inbound_categories))


def people_rules(config: Config) -> dict[str, Any]:
    """``Intake``'s keyword arguments for one person across directions (SPEC section 14)."""
    return {"inbound_consent": config.consent.inbound_categories, "join_identities": config.inbound.join_identities}


def outbound_rows(events: Sequence[Any], options: outbound.Options, digest: str | None = None,
                  types: FieldTypes | None = None) -> tuple[list[NewEvent], list[Rejection]]:
    """Classify Segment events: pending (with the Iterable call, decided here and frozen), skipped, or
    rejected with the reason. ``digest`` names the mapping that decided; with ``types`` (the type guard),
    a call carrying a value Iterable would refuse for its field's type is rejected."""
    rows, rejected = [], []
    for index, raw in enumerate(events):
        try:
            if deeper_than(raw, MAX_DEPTH):
                raise InvalidEvent(f"event: objects and arrays nested deeper than {MAX_DEPTH} levels")
            if isinstance(raw, dict) and RELEASED_IDENTITY in raw:  # only a released row of ours carries it
                raise InvalidEvent(f"{RELEASED_IDENTITY}: reserved for the events the daemon releases")
            event = segment_events.validate(raw)
            row, who = _outbound_row(event, options, digest)
            if types is not None and (refused := types.check(row.mapped)):
                raise InvalidEvent(refused)
            rows += [row, *companions(event, options, row, who.ids)]
        except Exception as exc:  # noqa: BLE001 - any value error of one event is that event's rejection
            error = rejection_reason(exc)
            rejected.append(Rejection(index=index, error=error))
            rows.append(_rejected_outbound(raw, error, digest))
    return rows, rejected


def rejection_reason(exc: Exception) -> str:
    """Why an event is rejected: ``InvalidEvent``'s message, or for any other error a value of the event raised
    while it was checked or mapped (a date past the calendar's edge, a number no type can hold...), a fixed
    text naming only the error's type (its message may quote personal data). Other ``SyncError``s propagate."""
    if isinstance(exc, InvalidEvent):
        return str(exc)
    if isinstance(exc, SyncError):
        raise exc
    log.warning("an event could not be converted: rejected", extra={"error_type": type(exc).__name__})
    return (f"event: a value could not be converted ({type(exc).__name__}), for example a date outside "
            "years 1-9999 in UTC or a number too large")


def outbound_row(event: dict[str, Any], options: outbound.Options, digest: str | None) -> NewEvent:
    """One validated event as a row; raises ``InvalidEvent`` when the mapping rejects it."""
    return _outbound_row(event, options, digest)[0]


def _outbound_row(event: dict[str, Any], options: outbound.Options, digest: str | None
                  ) -> tuple[NewEvent, outbound.Named]:
    """One validated event's row, and who it names (read once for the row and its companions)."""
    who = outbound.named(event, options.mapping.identity)
    mapped = outbound.map_event(event, options, who)
    seen = consent.preferences(event) if options.keep_consent else None  # for the person's inbound events
    forgets = event["type"] == "delete"  # whatever outbound.deletion is (SPEC section 11)
    if isinstance(mapped, outbound.Skip):
        return NewEvent(direction=Direction.OUTBOUND, key=event["messageId"], kind=event["type"], payload=event,
                        status=Status.SKIPPED, reason=mapped.reason, label=mapped.key, mapping_digest=digest,
                        user_key=who.user_key, identities=who.identities, consent=seen, forgets=forgets), who
    return NewEvent(direction=Direction.OUTBOUND, key=event["messageId"], kind=event["type"], payload=event,
                    user_key=mapped.user_key, identities=who.identities, mapped=mapped.frozen(),
                    mapping_digest=digest, forgets=forgets, consent=seen), who


def companions(event: dict[str, Any], options: outbound.Options, row: NewEvent,
               ids: dict[str, Any] | None = None) -> list[NewEvent]:
    """The rows of the calls an event brings along (tokens, subscriptions), right after its own row; ``ids``
    are the event's ``outbound.raw_ids`` when the caller has them."""
    if row.status is not Status.PENDING:
        return []
    return [NewEvent(direction=Direction.OUTBOUND, key=d.key, kind=d.kind, payload=event, user_key=row.user_key,
                     identities=row.identities, mapping_digest=row.mapping_digest,
                     mapped=d.call.frozen() if d.call else None,
                     status=Status.PENDING if d.call else Status.SKIPPED, reason=d.skip,
                     label="iterable.push" if d.skip else None)
            for d in derived(event, options, row.user_key, ids)]


def _rejected_outbound(raw: Any, error: str, digest: str | None = None) -> NewEvent:
    message_id = raw.get("messageId") if isinstance(raw, dict) else None
    key = f"rejected-{uuid.uuid4()}"
    if isinstance(message_id, str) and 0 < len(message_id) <= 100 and storable(message_id):
        key = message_id
    kind = raw["type"] if isinstance(raw, dict) and raw.get("type") in segment_events.TYPES else "unknown"
    named = _named(raw)
    altered = None
    if deeper_than(raw, MAX_DEPTH):  # kept as evidence only when it can be stored
        raw, altered = {"type": kind, "evidence": f"not kept: nested deeper than {MAX_DEPTH} levels"}, "too deep"
    elif non_finite(raw) is not None:
        altered = "numbers too large to represent stored as text"
    payload = finite(raw) if isinstance(raw, dict) else {"body": finite(raw)}
    if altered or not isinstance(raw, dict):  # evidence, not the event: never decided again (``remap``)
        payload = {**payload, NOT_AS_RECEIVED: altered or "not a JSON object"}
    return NewEvent(direction=Direction.OUTBOUND, key=key, kind=kind, payload=payload, user_key=named,
                    status=Status.REJECTED, reason=error, mapping_digest=digest)


def _named(raw: Any) -> str | None:
    """Who a rejected event names, if anyone can tell: it shows on their timeline and is forgotten with them
    (the identifier only; a rejected event links no one)."""
    if not isinstance(raw, dict):
        return None
    traits = raw.get("traits")
    email = traits.get("email") if isinstance(traits, dict) else None
    return people.identifier(raw.get("userId")) or people.email_identifier(email)


def inbound_row(webhook: Any, *, event_names: str, now: datetime, mapping: InboundMapping = SPEC_MAPPING,
                digest: str | None = None) -> NewEvent:
    """Classify an Iterable webhook: pending (with the Segment track, decided here and frozen), skipped by
    ``[inbound.filter]``, or rejected. Raises ``InvalidEvent`` when its shape is wrong or a value in it cannot
    be converted (its key could not be derived: there is no row to record)."""
    try:
        return _inbound_row(webhook, event_names=event_names, now=now, mapping=mapping, digest=digest)
    except Exception as exc:  # noqa: BLE001 - as in outbound_rows
        raise InvalidEvent(rejection_reason(exc)) from None


def _inbound_row(webhook: Any, *, event_names: str, now: datetime, mapping: InboundMapping = SPEC_MAPPING,
                digest: str | None = None) -> NewEvent:
    if deeper_than(webhook, MAX_DEPTH):
        raise InvalidEvent(f"webhook: objects and arrays nested deeper than {MAX_DEPTH} levels")
    webhook = inbound.validate(webhook)
    key = inbound.inbound_key(webhook)  # never depends on the mapping: a renamed event still dedupes
    user_key = (inbound.recipient(webhook) or "").lower() or None
    base = {"direction": Direction.INBOUND, "key": key, "also": inbound.message_key(webhook),
            "kind": webhook["eventName"].strip()[:255],
            "payload": webhook, "user_key": user_key, "mapping_digest": digest,
            "identities": inbound.identities(webhook)}
    skipped = inbound.skipped_by(webhook, mapping)
    if skipped:
        return NewEvent(**base, status=Status.SKIPPED, reason=skipped[0], label=skipped[1])
    try:
        track = inbound.to_track(webhook, event_names=event_names, received_at=now, mapping=mapping)
    except Exception as exc:  # noqa: BLE001 - as in outbound_rows
        return NewEvent(**base, status=Status.REJECTED, reason=rejection_reason(exc))
    return NewEvent(**base, mapped=inbound.frozen(track))


Recorded = set[tuple[Direction, str]]
Answer = tuple[Sequence[NewEvent], Recorded]  # the rows as recorded, and those of them recorded before
Batch = list[tuple[Sequence[NewEvent], "asyncio.Future[Answer]"]]
Prepare = Callable[[Sequence[Sequence[NewEvent]]], Awaitable[list[list[NewEvent]]]]
MAX_QUEUED_ROWS = 20_000  # rows waiting for a commit; past this, ingest answers 503 at once (backpressure)
COMMIT_SLICE = 1_000  # rows of one request per commit: one Iterable bulk request (a claim between two commits
# finds whole bulks), and encoding 1,000 rows for the driver costs tens of ms on the loop


class Recorder(Protocol):
    async def record(self, batch: Sequence[NewEvent], now: datetime, *, decide: Decider | None = None) -> set[str]:
        ...


class GroupCommit:
    """Concurrent requests share one transaction; each still gets its answer only after that commit.

    While one commit runs, new requests queue; the first of them to get the lock commits the whole
    queue. When a shared commit fails because the database refused values in it, each request is committed on
    its own, so a request whose rows the database refuses fails alone (503) and the others are answered as
    usual; when it fails for an outage (``LedgerUnavailable.outage``), every waiting request gets its 503 at once. At most
    ``max_queued`` rows wait: past that a request is refused with ``Overloaded`` before it queues.
    """

    def __init__(self, ledger: Recorder, clock: Callable[[], datetime], *,
                 max_queued: int = MAX_QUEUED_ROWS, decide: Decider | None = None,
                 prepare: Prepare | None = None) -> None:
        self.ledger, self.clock, self.max_queued, self.prepare = ledger, clock, max_queued, prepare
        self.decide = decide  # decides rows again inside the commit's transaction (one look-up per commit)
        self._queue: Batch = []
        self._queued = 0
        self._lock = asyncio.Lock()

    async def record(self, rows: Sequence[NewEvent]) -> Recorded:
        """Commit ``rows`` (with whatever else is waiting); return those already recorded before."""
        return (await self.submit(rows))[1]

    async def submit(self, rows: Sequence[NewEvent]) -> Answer:
        """Commit ``rows`` (with whatever else is waiting); return them as ``prepare`` changed them (holds and
        releases, decided while no other commit runs) and those already recorded before."""
        if self._queued and self._queued + len(rows) > self.max_queued:
            raise Overloaded(f"{self._queued} events are waiting for the ledger; retry shortly")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        self._queued += len(rows)
        async with self._lock:
            if not future.done():
                batch, self._queue = self._queue, []
                self._queued -= sum(len(r) for r, _ in batch)
                await self._commit(await self._prepared(batch))
        return await future

    async def _prepared(self, batch: Batch) -> Batch:
        if self.prepare is None:
            return batch
        try:
            prepared = await self.prepare([rows for rows, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request learns it (LedgerError: 503)
            _fail(batch, exc)
            return []
        return [(rows, future) for rows, (_, future) in zip(prepared, batch, strict=True)]

    async def _commit(self, batch: Batch) -> None:
        if not batch:
            return
        try:
            every = [row for rows, _ in batch for row in rows]
            known = await (self.ledger.record(every, self.clock(), decide=self.decide) if self.decide
                           else self.ledger.record(every, self.clock()))
        except Exception as exc:  # noqa: BLE001 - LedgerError, or a row the driver cannot encode
            if len(batch) == 1 or (isinstance(exc, LedgerUnavailable) and exc.outage):
                # an outage (a lock or statement timeout, no connection) fails every waiting request now (503),
                # and those queued meanwhile: tried one by one, or as the next batch, each would wait the whole
                # timeout again behind the commit lock (a client waited several timeouts for its 503)
                _fail(batch, exc)
                if isinstance(exc, LedgerUnavailable) and exc.outage:
                    waiting, self._queue = self._queue, []
                    self._queued -= sum(len(rows) for rows, _ in waiting)
                    _fail(waiting, exc)
            else:
                for entry in batch:  # one request at a time: only a request the database refuses fails
                    await self._commit([entry])
            return
        except BaseException:  # a cancelled commit: unknown outcome, so every waiting request answers 503
            _fail(batch, LedgerUnavailable("the commit was interrupted"))
            raise
        seen: Recorded = set()
        for rows, future in batch:
            ids = [(row.direction, row.key) for row in rows]
            future.set_result((rows, {i for i in ids if i[1] in known or i in seen}))
            seen.update(ids)


def _fail(batch: Batch, error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


class Holder(Recorder, HeldRows, Protocol):
    pass


def _released_rows(event: dict[str, Any], options: outbound.Options, digest: str | None) -> list[NewEvent]:
    """A released event's row and the rows of the calls it brings along (its push token, its subscriptions:
    held, the event made none; released, it is sent as the identified person's, calls included)."""
    row = _released_row(event, options, digest)
    try:
        return [row, *companions(event, options, row)]
    except Exception:  # noqa: BLE001 - as in _released_row: the event's own row is recorded whatever happens
        log.warning("a released event's companion calls could not be decided", exc_info=False)
        return [row]


def _released_row(event: dict[str, Any], options: outbound.Options, digest: str | None) -> NewEvent:
    """A released event's row: decided with its new identity, or rejected with the reason."""
    try:
        return outbound_row(event, options, digest)
    except Exception as exc:  # noqa: BLE001 - as in outbound_rows
        return _rejected_outbound(event, rejection_reason(exc), digest)


class OnePerson:
    """What the ledger knows of a person decides their new rows, inside the commit's transaction
    (``Ledger.record(decide=...)``), with one look-up per group commit: with ``inbound``, inbound rows obey the
    person's last outbound consent and carry their linked userId (SPEC section 14); with ``emails`` (email
    projects), an identify that gives a userId a new email is preceded by its email change (SPEC section 5,
    ``sync.outbound.email_changes``)."""

    def __init__(self, intake: Intake, *, inbound: bool = True, emails: bool = False) -> None:
        self.intake, self.inbound, self.emails = intake, inbound, emails

    def asked(self, rows: Sequence[NewEvent]) -> list[str]:
        return [*(inbound_people.asked(rows) if self.inbound else ()),
                *(email_changes.asked(rows) if self.emails else ())]

    def __call__(self, rows: Sequence[NewEvent], found: Mapping[str, Known]) -> list[NewEvent]:
        decided = list(rows)
        if self.inbound:
            intake = self.intake
            decided = [inbound_people.decided(row, found, categories=intake.inbound_consent,
                                              join=intake.join_identities) for row in rows]
            intake._decided.update((id(row), new) for row, new in zip(rows, decided, strict=True) if new is not row)
        if self.emails:  # the rows it adds are calls, not events received: they are not counted as received
            decided = email_changes.with_changes(decided, {i: k.email for i, k in found.items() if k.email})
        return decided


class Intake:
    """Records rows through group commit, counts them and wakes the delivery workers. With ``options``,
    anonymous-only events are held and released by the first event that identifies their visitor."""

    guard: FieldTypes | None = None  # Iterable's field types, when ``outbound.type_guard = "refuse"``

    def __init__(self, ledger: Holder, metrics: Metrics, *, notify: Callable[[Direction], None] = lambda d: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), options: outbound.Options | None = None,
                 digest: str | None = None, hold_hours: float = 0.0, inbound_consent: Sequence[str] = (),
                 join_identities: bool = False) -> None:
        self.ledger, self.metrics, self.notify, self.clock = ledger, metrics, notify, clock
        self.options, self.digest, self.hold_hours = options, digest, hold_hours
        self.inbound_consent, self.join_identities = tuple(inbound_consent), join_identities
        holds = None if options is None else Holds(ledger=ledger, options=options, hold_hours=hold_hours,
                                                   decide=lambda event: _released_rows(event, options, digest))
        inbound = bool(inbound_consent or join_identities)
        emails = options is not None and options.project_type == "email"
        self.commits = GroupCommit(ledger, clock, decide=OnePerson(self, inbound=inbound, emails=emails)
                                   if inbound or emails else None, prepare=holds.prepare if holds else None)
        self._decided: dict[int, NewEvent] = {}  # id(row) -> the row as _one_person decided it (for the counts)

    async def record(self, rows: Sequence[NewEvent]) -> set[str]:
        """Commit ``rows``; return the keys that were duplicates. Raises ``LedgerError`` if it cannot commit.

        More than ``COMMIT_SLICE`` rows are committed in successive slices (encoding rows for the driver runs on
        the event loop): if a later slice fails the request fails, and its retry finds the earlier ones as
        duplicates."""
        duplicates: set[str] = set()
        for start in range(0, len(rows), COMMIT_SLICE):
            duplicates |= await self._record(rows[start:start + COMMIT_SLICE])
        return duplicates

    async def _record(self, submitted: Sequence[NewEvent]) -> set[str]:
        try:
            rows, known = await self.commits.submit(submitted)
        except BaseException:  # no entry left behind (the rows ``OnePerson`` decides are submitted ones)
            for row in submitted:
                self._decided.pop(id(row), None)
            raise
        rows = [self._decided.pop(id(row), row) for row in rows]  # the rows as the commit decided them
        counted: set[tuple[Direction, str]] = set()
        tally: Counter[tuple[Any, ...]] = Counter()  # one increment per label set, not per row
        for row in rows:
            identity = (row.direction, row.key)
            if identity in known or identity in counted:
                tally[("duplicates", row.direction.value)] += 1
                continue
            counted.add(identity)
            tally.update(_counts(row))
        for (metric, *labels), count in tally.items():
            getattr(self.metrics, metric).labels(*labels).inc(count)
        for direction in {row.direction for row in rows if row.status is Status.PENDING}:
            self.notify(direction)
        return {key for _, key in known}


def _counts(row: NewEvent) -> list[tuple[str, ...]]:
    """The metrics a recorded row counts in, with their labels (in the metrics' label order)."""
    direction = row.direction.value
    kind = row.kind if row.direction is Direction.OUTBOUND or row.kind in inbound.SEGMENT_NAMES else "other"
    found: list[tuple[str, ...]] = [("received", direction, kind[:64])]  # an inbound eventName is open-ended
    if row.status is Status.SKIPPED:  # the label is the deciding rule or config key: bounded cardinality
        found.append(("skipped", direction, row.label or row.reason or ""))
    elif row.status is Status.REJECTED:
        found.append(("rejected", direction))
    return found
