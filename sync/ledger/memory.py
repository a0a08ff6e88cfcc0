"""An in-memory ledger with the semantics of ``sync.ledger.store.Ledger``, for fast unit tests of
the delivery engine and intake (procrastinate's ``InMemoryConnector`` is the model). Not durable:
the daemon never uses it; the contract suite runs the real one on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sync import people
from sync.ledger import forget, links
from sync.ledger.forget import Stored
from sync.model import (
    TERMINAL,
    Claim,
    Direction,
    Downtime,
    NewEvent,
    Queued,
    Row,
    Settlement,
    Status,
    claimable,
)


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.keys: dict[tuple[Direction, str], int] = {}
        self.links: dict[str, str] = {}
        self.spans: list[Downtime] = []
        self.consents: dict[str, tuple[dict[str, bool], datetime]] = {}  # identifier -> last consent, when seen

    async def record(self, batch: Sequence[NewEvent], now: datetime, *, decide: links.Decider | None = None
                     ) -> set[str]:
        if decide is not None and decide.asked(batch):
            batch = decide(batch, await self.people_known(decide.asked(batch)))
        fresh = [e for e in batch if (e.direction, e.key) not in self.keys]
        groups = [e.identities for e in fresh if e.identities]
        links, merges = people.link(self.links, groups)
        for ident, person in list(self.links.items()):
            self.links[ident] = merges.get(person, person)
        self.links.update(links)
        for row_id, row in self.rows.items():
            if row.status is Status.PENDING and row.user_key in merges:
                self.rows[row_id] = dataclasses.replace(row, user_key=merges[row.user_key])
        known = {e.key for e in batch if (e.direction, e.key) in self.keys}
        for e in fresh:
            if (e.direction, e.key) in self.keys:
                continue
            row_id = max(self.rows, default=0) + 1
            self.keys[(e.direction, e.key)] = row_id
            self.rows[row_id] = Row(
                id=row_id, direction=e.direction, key=e.key, kind=e.kind, payload=e.payload, status=e.status,
                user_key=self.links[e.identities[0]] if e.identities else e.user_key, attempts=0,
                next_attempt_at=now, lease_owner=None, lease_expires_at=None, last_error=None, reason=e.reason,
                received_at=now, updated_at=now, retry_from=now, mapped=e.mapped, mapping_digest=e.mapping_digest)
        self._after_record(fresh, now)
        return known

    def _after_record(self, fresh: Sequence[NewEvent], now: datetime) -> None:
        """Released held rows, consents seen, and forgetting, as ``Ledger.record`` does them."""
        for item in links.consent_rows(fresh, now):
            self.consents[item["identifier"]] = (item["categories"], now)
        for e in fresh:
            for key in e.replaces:
                row = self.rows[self.keys.get((e.direction, key), 0)] if (e.direction, key) in self.keys else None
                if row is not None and row.status is Status.HELD:
                    self.rows[row.id] = dataclasses.replace(row, status=Status.SKIPPED, reason=f"released as {e.key}",
                                                            updated_at=now)
            if e.forgets:
                person = self.links[e.identities[0]] if e.identities else e.user_key
                if person:
                    keep = (e.direction, e.key) if e.status is Status.PENDING else None
                    self._forget(person, now, keep=keep, why="user deleted")

    async def forget(self, identifier: str, now: datetime) -> int:
        person = next((self.links[i] for i in forget.lookups(identifier) if i in self.links), identifier)
        return self._forget(person, now, keep=None, why="user forgotten")

    def _forget(self, person: str, now: datetime, *, keep: tuple[Direction, str] | None, why: str) -> int:
        idents = [i for i, p in self.links.items() if p == person] or [person]
        digest = forget.identity_hash(idents)
        mine = [self._stored(r) for r in self.rows.values() if r.user_key in {person, *idents}]
        wanted, holds = forget.originals(mine), forget.visitors(mine)
        mine += [self._stored(r) for r in self.rows.values() if r.user_key and r.user_key.startswith(forget.HOLD_PREFIX)
                 and (r.direction is Direction.OUTBOUND and r.key in wanted
                      or r.user_key in holds and r.status is Status.HELD)]
        count = 0
        for row in {r.id: r for r in mine}.values():
            if keep == (row.direction, row.key):
                self.rows[row.id] = dataclasses.replace(self.rows[row.id],
                                                        mapped={**(row.mapped or {}), "forget_hash": digest})
                continue
            self.rows[row.id] = dataclasses.replace(self.rows[row.id], **forget.erase(row, idents, digest, now, why))
            count += 1
        for ident in idents:
            self.links.pop(ident, None)
            self.consents.pop(ident, None)
        return count

    def _stored(self, row: Row) -> Stored:
        return Stored(id=row.id, direction=row.direction, key=row.key, status=row.status, reason=row.reason,
                             payload=row.payload, mapped=row.mapped)

    async def people_known(self, identifiers: Sequence[str]) -> dict[str, links.Known]:
        persons = {self.links[i] for i in identifiers if i in self.links}
        mine = {i: p for i, p in self.links.items() if p in persons}
        seen = sorted(((i, c) for i, (c, at) in self.consents.items() if i in mine),
                      key=lambda item: self.consents[item[0]][1], reverse=True)
        return {i: links.known(i, mine, seen) for i in identifiers}

    async def deletions_pending(self) -> int:
        return sum(r.status is Status.PENDING and r.kind == "delete" for r in self.rows.values())

    async def purge(self, older_than: datetime) -> int:
        """Terminal rows last changed before ``older_than`` go, and the identity links no row names any more."""
        gone = [i for i, r in self.rows.items() if r.status in TERMINAL and r.updated_at < older_than]
        for row_id in gone:
            row = self.rows.pop(row_id)
            self.keys.pop((row.direction, row.key), None)
        named = {r.user_key for r in self.rows.values()}
        self.links = {i: p for i, p in self.links.items() if p in named}
        self.consents = {i: c for i, c in self.consents.items() if i in self.links}
        return len(gone)

    async def held(self, keys: Sequence[str]) -> list[Row]:
        return [r for r in self.rows.values() if r.status is Status.HELD and r.user_key in keys]

    async def held_counts(self, keys: Sequence[str]) -> tuple[dict[str, int], int]:
        held = [r for r in self.rows.values() if r.status is Status.HELD]
        return {k: sum(r.user_key == k for r in held) for k in keys}, len(held)

    async def claim(self, claim: Claim, now: datetime) -> list[Row]:
        pending = self._pending(claim.direction)
        due = sorted((r for r in pending if r.next_attempt_at <= now and not self._leased(r, now)),
                     key=lambda r: (r.next_attempt_at, r.id))[:claim.limit]
        if not due:
            return []
        up_to = max(r.id for r in due)
        ids = [r.id for r in due if r.user_key is None]
        for user in {r.user_key for r in due if r.user_key is not None}:
            queue = [Queued(r.id, r.next_attempt_at <= now and not self._leased(r, now)) for r in pending
                     if r.user_key == user and r.id <= up_to]
            ids += claimable(queue, claim.in_flight)
        until = now + timedelta(seconds=claim.lease_seconds)
        chosen = sorted(ids)[:claim.limit]
        for i in chosen:
            self.rows[i] = dataclasses.replace(self.rows[i], lease_owner=claim.owner, lease_expires_at=until,
                                               next_attempt_at=until)
        return [self.rows[i] for i in chosen]

    async def recheck(self, owner: str, ids: Sequence[int]) -> dict[int, tuple[str | None, bool]]:
        return {i: (self.rows[i].user_key, self._mine(i, owner)) for i in ids if i in self.rows}

    async def renew(self, owner: str, ids: Sequence[int], until: datetime, *, lease_seconds: float | None = None
                    ) -> int:
        held = [i for i in ids if self._mine(i, owner)]
        for i in held:
            self.rows[i] = dataclasses.replace(self.rows[i], lease_expires_at=until, next_attempt_at=until)
        return len(held)

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
        def change(row_id: int, tried: bool = True, **values: Any) -> None:
            if self._mine(row_id, owner):
                row = self.rows[row_id]
                self.rows[row_id] = dataclasses.replace(row, lease_owner=None, lease_expires_at=None,
                                                        updated_at=now, attempts=row.attempts + tried, **values)

        for row_id in settlement.delivered:
            change(row_id, status=Status.DELIVERED, last_error=None)
        for row_id, at, error in settlement.retry:
            change(row_id, next_attempt_at=at, last_error=error)
        for row_id, reason in settlement.dead:
            change(row_id, status=Status.DEAD, reason=reason)
        for row_id in settlement.released:
            change(row_id, tried=False, next_attempt_at=now)
        for row_id in settlement.forgotten:  # a delivered deletion becomes a tombstone too
            row = self.rows[row_id]
            if row.status is Status.DELIVERED:
                digest = (row.mapped or {}).get("forget_hash", "")
                self.rows[row_id] = dataclasses.replace(row, payload=forget.tombstone(digest), mapped=None,
                                                        user_key=forget.forgotten_key(digest))

    async def release_owner(self, owner: str, now: datetime) -> int:
        mine = [i for i in self.rows if self._mine(i, owner)]
        await self.settle(Settlement(released=tuple(mine)), now, owner=owner)
        return len(mine)

    async def pause(self, direction: Direction, reason: str, now: datetime, *, kind: str = "paused") -> None:
        if not any(s.direction == direction and s.ended_at is None and s.kind == kind for s in self.spans):
            self.spans.append(Downtime(direction=direction, kind=kind, reason=reason, started_at=now))

    async def resume(self, direction: Direction, now: datetime, *, kind: str = "paused") -> int:
        open_spans = [i for i, s in enumerate(self.spans)
                      if s.direction == direction and s.ended_at is None and s.kind == kind]
        for i in open_spans:
            self.spans[i] = dataclasses.replace(self.spans[i], ended_at=now)
        return len(open_spans)

    async def held_by_operator(self, direction: Direction) -> str | None:
        return next((s.reason for s in self.spans
                     if s.direction == direction and s.ended_at is None and s.kind == "manual"), None)

    async def add_downtime(self, span: Downtime) -> None:
        self.spans.append(span)

    async def downtime(self, direction: Direction, since: datetime) -> list[Downtime]:
        return [s for s in self.spans if s.direction == direction and (s.ended_at is None or s.ended_at > since)]

    async def get(self, direction: Direction, key: str) -> Row | None:
        row_id = self.keys.get((direction, key))
        return self.rows[row_id] if row_id else None

    def _pending(self, direction: Direction) -> list[Row]:
        return [r for r in self.rows.values() if r.direction == direction and r.status is Status.PENDING]

    @staticmethod
    def _leased(row: Row, now: datetime) -> bool:
        return row.lease_expires_at is not None and row.lease_expires_at > now

    def _mine(self, row_id: int, owner: str) -> bool:
        row = self.rows.get(row_id)
        return row is not None and row.status is Status.PENDING and row.lease_owner == owner
