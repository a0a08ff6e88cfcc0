"""The ledger's contract in memory, for fast tests of the delivery engine and intake (procrastinate's
``InMemoryConnector`` is the model). Not durable: the daemon never uses it. Every decision comes from
``sync.ledger.decisions``, as in the SQL ledger, and the contract suite runs on it beside SQLite and PostgreSQL.

Leases are judged by the ``now`` each call passes: in memory, the process's clock is the database's.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sync import people
from sync.ledger import decisions
from sync.ledger.decisions import Stored
from sync.model import (
    EMAIL_KINDS,
    EMAIL_STATUSES,
    Claim,
    Decider,
    Direction,
    Downtime,
    Known,
    NewEvent,
    Pending,
    Queued,
    Remapped,
    Row,
    Settlement,
    Stats,
    Status,
    claimable,
    event_name,
    known,
    last_email,
)


class MemoryLedger:
    """Rows by id (``table``), their (direction, key) index, identity links, consents, downtime spans and cursors."""

    def __init__(self) -> None:
        self.table: dict[int, Row] = {}
        self.keys: dict[tuple[Direction, str], int] = {}
        self.also_keys: set[tuple[Direction, str]] = set()
        self.links: dict[str, str] = {}  # identifier -> person key
        self.spans: list[Downtime] = []
        self.consents: dict[str, tuple[dict[str, bool], datetime]] = {}  # identifier -> last consent, when seen
        self.cursors: dict[str, str] = {}
        self._ids = itertools.count(1)

    async def close(self) -> None:
        return None

    def _change(self, row_id: int, values: Mapping[str, Any]) -> None:
        row = self.table[row_id]
        if "key" in values and values["key"] != row.key:  # the idempotency index follows a renamed key
            del self.keys[(row.direction, row.key)]
            self.keys[(row.direction, values["key"])] = row_id
        self.table[row_id] = dataclasses.replace(row, **values)

    # -- ingest -----------------------------------------------------------------------------------------------

    async def record(self, batch: Sequence[NewEvent], now: datetime, *, decide: Decider | None = None) -> set[str]:
        """Record new events once; return the keys already recorded (as ``Ledger.record``)."""
        unique = decisions.first_copies(batch)
        if decide is not None and (asked := decide.asked(unique)):
            unique = decisions.first_copies(decide(unique, await self.people_known(asked, emails=decide.emails)))
        recorded: set[str] = set()
        for part in decisions.up_to_each_deletion(unique):
            recorded |= self._record_part(part, now)
        return {e.key for e in unique} - recorded

    def _record_part(self, part: Sequence[NewEvent], now: datetime) -> set[str]:
        persons = self._people([e.identities for e in part if e.identities])
        fresh = []
        for e in part:  # either idempotency key makes a duplicate (the first copy of an also-key wins too)
            if (e.direction, e.key) in self.keys or e.also and (e.direction, e.also) in self.also_keys:
                continue
            if e.also:
                self.also_keys.add((e.direction, e.also))
            fresh.append(e)
        for e in fresh:
            self._insert(e, persons[e.identities[0]] if e.identities else e.user_key, now)
        for item in decisions.consent_rows(fresh, now):
            self.consents[item["identifier"]] = (item["categories"], now)
        for e in fresh:
            self._after_insert(e, persons, now)
        return {e.key for e in fresh}

    def _insert(self, e: NewEvent, user_key: str | None, now: datetime) -> None:
        row_id = next(self._ids)
        self.keys[(e.direction, e.key)] = row_id
        self.table[row_id] = Row(
            id=row_id, direction=e.direction, key=e.key, kind=e.kind[:255], payload=e.payload, status=e.status,
            user_key=user_key[:255] if user_key else None, attempts=0, next_attempt_at=now, lease_owner=None,
            lease_expires_at=None, last_error=None, reason=e.reason, received_at=now, updated_at=now,
            retry_from=now, mapped=e.mapped, mapping_digest=e.mapping_digest,
            name=event_name(e.direction, e.kind, e.payload))

    def _after_insert(self, e: NewEvent, persons: Mapping[str, str], now: datetime) -> None:
        """The held rows ``e`` releases, and the person a deletion forgets."""
        for key in e.replaces:
            row = self.table.get(self.keys.get((e.direction, key), 0))
            if row is not None and row.status is decisions.HOLD:
                self._change(row.id, decisions.release_of(e, now))
        person = persons[e.identities[0]] if e.identities else e.user_key
        if e.forgets and person:  # whatever outbound.deletion is: "skip" skips only the call
            keep = (e.direction, e.key) if e.status is Status.PENDING else None
            self._forget(person, now, keep=keep, why="user deleted")

    def _people(self, groups: list[tuple[str, ...]]) -> dict[str, str]:
        """Link the identifiers of ``groups`` into people (``people.link``); pending rows follow a merge."""
        wanted = {ident for group in groups for ident in group}
        known_links = {i: self.links[i] for i in wanted if i in self.links}
        links, merges = people.link(known_links, groups)
        for ident, person in self.links.items():
            self.links[ident] = merges.get(person, person)
        for row in list(self.table.values()):
            if (moved := decisions.merged(row.status, row.user_key, merges)) is not None:
                self._change(row.id, {"user_key": moved})
        self.links.update(links)
        return {**{i: merges.get(p, p) for i, p in known_links.items()}, **links}

    async def people_known(self, identifiers: Sequence[str], *, emails: bool = False) -> dict[str, Known]:
        persons = {self.links[i] for i in identifiers if i in self.links}
        mine = {i: p for i, p in self.links.items() if p in persons}
        seen = [(i, c) for i, (c, _) in sorted(((i, v) for i, v in self.consents.items() if i in mine),
                                               key=lambda item: item[1][1], reverse=True)]
        last = self._last_emails(persons) if emails else {}
        return {i: known(i, mine, seen, last) for i in identifiers}

    def _last_emails(self, persons: set[str]) -> dict[str, str]:
        """As ``sync.ledger.links.last_emails``: the email each person's newest row of ``EMAIL_KINDS`` named."""
        newest: dict[str, Row] = {}
        for row in self._in_order():
            if (row.direction is Direction.OUTBOUND and row.user_key in persons and row.kind in EMAIL_KINDS
                    and row.status in EMAIL_STATUSES):
                newest[row.user_key] = row
        return {person: email for person, row in newest.items() if (email := last_email(row.mapped))}

    async def deletions_pending(self) -> int:
        return sum(r.status is Status.PENDING and r.kind == "delete" for r in self.table.values())

    async def held(self, keys: Sequence[str]) -> list[Row]:
        return [r for r in self._in_order() if r.status is Status.HELD and r.user_key in keys]

    async def held_counts(self, keys: Sequence[str]) -> tuple[dict[str, int], int]:
        held = [r for r in self.table.values() if r.status is Status.HELD]
        counts = {k: n for k in keys if (n := sum(r.user_key == k for r in held))}
        return counts, len(held)

    async def expire_held(self, before: datetime, now: datetime, *, chunk: int = 1000) -> int:
        expired = [r.id for r in self.table.values() if r.status is Status.HELD and r.received_at < before]
        for row_id in expired:
            self._change(row_id, decisions.hold_expired(now))
        return len(expired)

    # -- forgetting -----------------------------------------------------------------------------------------

    async def forget(self, identifier: str, now: datetime) -> int:
        person = next((self.links[i] for i in decisions.lookups(identifier) if i in self.links), identifier)
        return self._forget(person, now, keep=None, why="user forgotten")

    def _forget(self, person: str, now: datetime, *, keep: tuple[Direction, str] | None, why: str) -> int:
        idents = [i for i, p in self.links.items() if p == person] or [person]
        digest = decisions.identity_hash(idents)
        stored = [_stored(r) for r in self.table.values()]
        mine = [r for r in stored if r.user_key in {person, *idents}]
        wanted, holds = decisions.originals(mine), decisions.visitors(mine)
        seen = {r.id for r in mine}
        mine += [r for r in stored if r.id not in seen and decisions.anonymous_of(r, wanted, holds)]
        changes = [(r.id, decisions.forgetting(r, idents, digest, now, keep=keep, why=why)) for r in mine]
        for row_id, values in changes:
            self._change(row_id, values)
        self.links = {i: p for i, p in self.links.items() if p != person}
        for ident in idents:
            self.consents.pop(ident, None)
        return decisions.erased(values for _, values in changes)

    # -- claims and settlement ------------------------------------------------------------------------------

    async def claim(self, claim: Claim, now: datetime) -> list[Row]:
        """Lease due rows in per-person order (``model.claimable``), as ``Ledger.claim``."""
        pending = [r for r in self._in_order() if r.direction is claim.direction and r.status is Status.PENDING]
        due = sorted((r for r in pending if self._due(r, now)), key=lambda r: (r.next_attempt_at, r.id))
        due = due[:claim.limit]
        if not due:
            return []
        up_to = max(r.id for r in due)
        ids = [r.id for r in due if r.user_key is None]
        for person in sorted({r.user_key for r in due if r.user_key is not None}):
            queue = [Queued(r.id, self._due(r, now)) for r in pending if r.user_key == person and r.id <= up_to]
            ids += claimable(queue, claim.in_flight)
        until = now + timedelta(seconds=claim.lease_seconds)
        chosen = sorted(ids)[:claim.limit]
        for row_id in chosen:
            self._change(row_id, {"lease_owner": claim.owner, "lease_expires_at": until, "next_attempt_at": until})
        return [self.table[i] for i in chosen]

    @staticmethod
    def _due(row: Row, now: datetime) -> bool:
        return decisions.due(row.status, row.next_attempt_at, row.lease_expires_at, now)

    def _held_by(self, row_id: int, owner: str) -> bool:
        row = self.table.get(row_id)
        return row is not None and decisions.held_by(row.status, row.lease_owner, owner)

    async def recheck(self, owner: str, ids: Sequence[int]) -> dict[int, tuple[str | None, bool]]:
        return {i: (self.table[i].user_key, self._held_by(i, owner)) for i in ids if i in self.table}

    async def renew(self, owner: str, ids: Sequence[int], until: datetime, *, lease_seconds: float | None = None
                    ) -> int:
        held = [i for i in ids if self._held_by(i, owner)]
        for row_id in held:
            self._change(row_id, {"lease_expires_at": until, "next_attempt_at": until})
        return len(held)

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
        """Apply ``decisions.settled`` to the rows ``owner`` still leases; delivered deletions become tombstones."""
        for row_id, values, tried in decisions.settled(settlement, now):
            if self._held_by(row_id, owner):
                self._change(row_id, {**values, "attempts": self.table[row_id].attempts + tried})
        for row_id in settlement.forgotten:
            row = self.table.get(row_id)
            tombstone = decisions.deletion_forgotten(row.status, row.mapped) if row else None
            if tombstone is not None:
                self._change(row_id, tombstone)

    async def release_owner(self, owner: str, now: datetime) -> int:
        mine = [i for i in self.table if self._held_by(i, owner)]
        for row_id in mine:
            self._change(row_id, decisions.released(now))
        return len(mine)

    async def reap_expired(self, now: datetime) -> int:
        ended = [r.id for r in self.table.values() if r.status is decisions.LEASED and r.lease_owner is not None
                 and not decisions.lease_running(r.lease_expires_at, now)]
        for row_id in ended:
            self._change(row_id, decisions.reaped())
        return len(ended)

    # -- downtime -------------------------------------------------------------------------------------------

    def _open(self, direction: Direction, kinds: Iterable[str]) -> list[int]:
        return [i for i, s in enumerate(self.spans) if s.direction == direction and s.ended_at is None
                and s.kind in kinds]

    async def pause(self, direction: Direction, reason: str, now: datetime, *, kind: str = "paused") -> None:
        if not self._open(direction, (kind,)):
            self.spans.append(Downtime(direction=direction, kind=kind, reason=reason[:2000], started_at=now))

    async def resume(self, direction: Direction, now: datetime, *, kind: str = "paused") -> int:
        spans = self._open(direction, (kind,))
        for i in spans:
            self.spans[i] = dataclasses.replace(self.spans[i], ended_at=now)
        return len(spans)

    async def held_by_operator(self, direction: Direction) -> str | None:
        return next((self.spans[i].reason for i in self._open(direction, ("manual",))), None)

    async def add_downtime(self, span: Downtime) -> None:
        self.spans.append(dataclasses.replace(span, reason=span.reason[:2000]))

    async def downtime(self, direction: Direction, since: datetime) -> list[Downtime]:
        return [s for s in self.spans if s.direction == direction and (s.ended_at is None or s.ended_at > since)]

    # -- reading and operating -----------------------------------------------------------------------------

    def _in_order(self) -> list[Row]:
        return [self.table[i] for i in sorted(self.table)]

    async def stats(self) -> Stats:
        counts: dict[tuple[str, str], int] = {}
        for row in self.table.values():
            counts[(row.direction, row.status)] = counts.get((row.direction, row.status), 0) + 1
        paused = {s.direction.value: s.reason for s in self.spans
                  if s.ended_at is None and s.kind in decisions.PAUSE_KINDS}
        return Stats(counts=counts, oldest_pending=self._oldest(), paused=paused)

    def _oldest(self) -> dict[str, datetime]:
        oldest: dict[str, datetime] = {}
        for row in self.table.values():
            if row.status is Status.PENDING:
                oldest[row.direction] = min(oldest.get(row.direction, row.received_at), row.received_at)
        return oldest

    async def pending(self) -> Pending:
        counts: dict[str, int] = {}
        held: dict[str, int] = {}
        for row in self.table.values():
            tally = counts if row.status is Status.PENDING else held if row.status is Status.HELD else None
            if tally is not None:
                tally[row.direction] = tally.get(row.direction, 0) + 1
        return Pending(counts=counts, oldest=self._oldest(), held=held)

    async def rows(self, *, status: Status | None = None, direction: Direction | None = None,
                         limit: int = 50, ids: Sequence[int] = (), after_id: int = 0) -> list[Row]:
        """``Ledger.rows``: rows of one status (or the given ids), in id order, ``limit`` after ``after_id``."""
        found = [r for r in self._in_order() if r.id > after_id and (status is None or r.status is status)
                 and (not ids or r.id in ids) and (direction is None or r.direction is direction)]
        return found[:limit]

    async def remap(self, changes: Sequence[Remapped], now: datetime) -> int:
        done = [c for c in changes if c.id in self.table and self.table[c.id].status is c.was
                and not decisions.lease_running(self.table[c.id].lease_expires_at, now)]
        for change in done:
            self._change(change.id, decisions.redecided(change, now))
        return len(done)

    async def requeue(self, now: datetime, *, status: Status | None = None, ids: Sequence[int] = (),
                      direction: Direction | None = None) -> int:
        """Send dead rows again as recorded (``decisions.requeueable``), as ``Ledger.requeue``."""
        chosen = [r.id for r in self.table.values() if (r.status is status if status else r.id in ids)
                  and decisions.requeueable(r.status, r.user_key) and (direction is None or r.direction is direction)]
        for row_id in chosen:
            self._change(row_id, decisions.requeued(now))
        return len(chosen)

    async def purge(self, older_than: datetime, *, chunk: int = 1000) -> int:
        """Terminal rows last changed before ``older_than`` go, and the identity links no row names any more."""
        gone = [r for r in self.table.values() if decisions.purgeable(r.status, r.updated_at, older_than)]
        for row in gone:
            del self.table[row.id]
            del self.keys[(row.direction, row.key)]
        named = {r.user_key for r in self.table.values()}
        self.links = {i: p for i, p in self.links.items() if p in named}
        self.consents = {i: c for i, c in self.consents.items() if i in self.links}
        return len(gone)

    async def get(self, direction: Direction, key: str) -> Row | None:
        row_id = self.keys.get((direction, key))
        return self.table[row_id] if row_id else None

    async def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def set_cursor(self, name: str, position: str, now: datetime) -> None:
        self.cursors[name] = position

    @asynccontextmanager
    async def singleton(self, name: str) -> AsyncIterator[bool]:
        yield True  # one process holds the memory


def _stored(row: Row) -> Stored:
    return Stored(id=row.id, direction=row.direction, key=row.key, status=row.status, reason=row.reason,
                  payload=row.payload, mapped=row.mapped, user_key=row.user_key)
