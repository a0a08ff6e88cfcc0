"""An in-memory ledger with the semantics of ``sync.ledger.store.Ledger``, for fast unit tests of
the delivery engine and intake (procrastinate's ``InMemoryConnector`` is the model). Not durable:
the daemon never uses it; the contract suite runs the real one on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sync import people
from sync.ledger.model import Claim, Direction, Downtime, NewEvent, Queued, Row, Settlement, Status, claimable


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.keys: dict[tuple[Direction, str], int] = {}
        self.links: dict[str, str] = {}
        self.spans: list[Downtime] = []

    async def record(self, batch: Sequence[NewEvent], now: datetime) -> set[str]:
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
            row_id = len(self.rows) + 1
            self.keys[(e.direction, e.key)] = row_id
            self.rows[row_id] = Row(
                id=row_id, direction=e.direction, key=e.key, kind=e.kind, payload=e.payload, status=e.status,
                user_key=self.links[e.identities[0]] if e.identities else e.user_key, attempts=0,
                next_attempt_at=now, lease_owner=None, lease_expires_at=None, last_error=None, reason=e.reason,
                received_at=now, updated_at=now, retry_from=now, mapped=e.mapped, mapping_digest=e.mapping_digest)
        return known

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
