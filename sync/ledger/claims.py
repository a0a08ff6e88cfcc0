"""Claims and settlement: leasing due rows in per-person order, re-checking them at send, renewing and
giving back leases, and applying a delivery round's outcome (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger import decisions, history
from sync.ledger.base import NOT_FORGOTTEN, SqlLedger, _ids_in, _in, _lock_id, _moment
from sync.ledger.schema import events
from sync.model import Attempt, Claim, Direction, Queued, Row, Settlement, Status, claimable

# when its call was not frozen at intake (rows recorded before revision 0004), and times come as the driver
# gives them (SQLite's text is parsed by ``_moment``, far cheaper than the generic type's parser)
_RAW_TIMES = ("received_at", "updated_at", "retry_from")
CLAIMED = [sa.type_coerce(c, sa.String()).label(c.name) if c.name in _RAW_TIMES else c for c in events.c
           if c.name not in ("payload", "next_attempt_at", "lease_owner", "lease_expires_at")] + [
    sa.type_coerce(sa.case((events.c.mapped.is_(None), events.c.payload)), sa.JSON).label("payload")]



_DIRECTIONS = {d.value: d for d in Direction}


def _rows(found: Sequence[Any], owner: str, until: datetime) -> list[Row]:
    """Claimed rows as values, for the cost of the claim's hot path: the direction looked up rather than
    parsed, and a time read once per distinct value (a fresh row was received, updated and retried from the
    same moment; a backlog's rows share moments)."""
    moments: dict[Any, datetime] = {}

    def moment(value: Any) -> datetime:
        found = moments.get(value)
        if found is None:
            found = moments[value] = _moment(value)
        return found

    return [Row(id=r.id, direction=_DIRECTIONS[r.direction], key=r.key, kind=r.kind, user_key=r.user_key,
                payload=r.payload or {}, status=Status.PENDING, attempts=r.attempts, next_attempt_at=until,
                lease_owner=owner, lease_expires_at=until, last_error=r.last_error, reason=r.reason,
                received_at=moment(r.received_at), updated_at=moment(r.updated_at),
                retry_from=moment(r.retry_from or r.received_at),
                mapped=r.mapped, mapping_digest=r.mapping_digest, name=r.name) for r in found]


class Claims(SqlLedger):
    """Delivery's side of the ledger."""

    async def claim(self, claim: Claim, now: datetime) -> list[Row]:
        """Lease due rows, never a row whose person has an earlier row that must go first.

        Two index range reads, whatever the backlog: the first ``limit`` due rows in due order
        (``ix_events_due``; a leased row is not due until its lease runs out), then the queues of the
        people they belong to up to those rows (``ix_events_user_pending``). ``model.claimable`` decides,
        per person, how far their queue may go now.
        """
        e = events
        until = now + timedelta(seconds=claim.lease_seconds)
        self.leases.live.add(claim.owner)
        due = (sa.select(e.c.id, e.c.user_key)
               .where(e.c.direction == claim.direction, e.c.status == Status.PENDING, e.c.next_attempt_at <= now)
               .where(self.leases.free(now))
               .order_by(e.c.next_attempt_at, e.c.id).limit(claim.limit))
        async with self._tx() as conn:
            if self.is_postgres:  # one claimer per direction at a time keeps per-person order across replicas
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(f"claim:{claim.direction}"))))
            candidates = (await conn.execute(due)).all()
            if not candidates:
                return []
            ids = [c.id for c in candidates if c.user_key is None]
            people_keys = sorted({c.user_key for c in candidates if c.user_key is not None})
            if people_keys:
                ids += await self._claimable(conn, claim, people_keys, max(c.id for c in candidates), now)
            ids = sorted(ids)[:claim.limit]
            if not ids:
                return []
            await conn.execute(e.update().where(_ids_in(self.is_postgres, ids))
                               .values(lease_owner=claim.owner, next_attempt_at=until,
                                       lease_expires_at=self.leases.until(until, claim.lease_seconds)))
            found = (await conn.execute(sa.select(*CLAIMED).where(_ids_in(self.is_postgres, ids))
                                        .order_by(e.c.id))).all()
            return _rows(found, claim.owner, until)

    async def _claimable(self, conn: AsyncConnection, claim: Claim, keys: list[str], up_to: int,
                         now: datetime) -> list[int]:
        """What each person's queue (pending rows up to ``up_to``, in id order) lets this claim take."""
        e = events
        free = sa.case((sa.and_(e.c.next_attempt_at <= now, self.leases.free(now)), 1), else_=0)
        mine = (e.c.direction == claim.direction, e.c.status == Status.PENDING, e.c.id <= up_to)
        if self.is_postgres:  # one index range per person (a LATERAL join): the planner cannot turn it into a scan
            wanted = sa.func.unnest(sa.bindparam("user_keys", keys, type_=postgresql.ARRAY(sa.String()))) \
                .table_valued("key").render_derived(name="wanted")
            per_person = claim.limit + len(claim.in_flight)  # a LIMIT keeps the join a loop of index ranges
            queue = (sa.select(e.c.id, e.c.user_key, free.label("free")).where(*mine, e.c.user_key == wanted.c.key)
                     .order_by(e.c.id).limit(per_person).lateral("queue"))
            query = sa.select(queue.c.id, queue.c.user_key, queue.c.free).select_from(wanted.join(queue, sa.true()))
            query = query.order_by(queue.c.user_key, queue.c.id)
        else:
            query = (sa.select(e.c.id, e.c.user_key, free.label("free"))
                     .where(*mine, _in(e.c.user_key, keys, False, sa.String()))
                     .order_by(e.c.user_key, e.c.id))
        queues: dict[str, list[Queued]] = {}
        for r in (await conn.execute(query)).all():
            queues.setdefault(r.user_key, []).append(Queued(r.id, bool(r.free)))
        return [row_id for queue in queues.values() for row_id in claimable(queue, claim.in_flight)]

    async def recheck(self, owner: str, ids: Sequence[int]) -> dict[int, tuple[str | None, bool]]:
        """Each row's person key now, and whether it is still pending under ``owner``'s running lease (a row
        skipped, forgotten or decided again since it was claimed is not, nor one whose lease ran out:
        ``Leases.running``); rows gone from the ledger are left out."""
        if not ids:
            return {}
        mine = sa.and_(events.c.status == decisions.LEASED, events.c.lease_owner == owner, self.leases.running())
        query = sa.select(events.c.id, events.c.user_key, sa.case((mine, 1), else_=0).label("mine")).where(
            _ids_in(self.is_postgres, ids))
        async with self._tx() as conn:
            return {r.id: (r.user_key, bool(r.mine)) for r in (await conn.execute(query)).all()}

    async def renew(self, owner: str, ids: Sequence[int], until: datetime, *, lease_seconds: float | None = None) -> int:
        """Extend ``owner``'s leases on ``ids`` (on PostgreSQL by ``lease_seconds`` from the database's clock);
        return how many it still holds."""
        if not ids:
            return 0
        stmt = events.update().where(_ids_in(self.is_postgres, ids), events.c.lease_owner == owner,
                                     events.c.status == decisions.LEASED)
        expires = self.leases.until(until, lease_seconds)
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(lease_expires_at=expires, next_attempt_at=until))).rowcount
                       or 0)

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
        """Apply one delivery round's outcome as ``decisions.settled`` decides it: only rows ``owner`` still
        leases change. One statement per kind of outcome (the retries and dead letters as one statement with many
        parameter sets)."""
        e = events
        free = {**decisions.FREED, "updated_at": now}
        mine = sa.and_(e.c.status == decisions.LEASED, e.c.lease_owner == owner)
        tried = {**free, "attempts": e.c.attempts + 1}
        one = e.c.id == sa.bindparam("row_id")
        async with self._tx() as conn:
            if settlement.delivered:
                stmt = e.update().where(_ids_in(self.is_postgres, settlement.delivered), mine)
                await conn.execute(stmt.values(status=Status.DELIVERED, last_error=None, **tried))
            if settlement.retry:
                stmt = e.update().where(one, mine).values(next_attempt_at=sa.bindparam("due"),
                                                          last_error=sa.bindparam("error"), **tried)
                await conn.execute(stmt, [{"row_id": i, "due": at, "error": error[:decisions.TEXT_CHARS]}
                                          for i, at, error in settlement.retry])
            if settlement.dead:
                stmt = e.update().where(one, mine).values(status=Status.DEAD, reason=sa.bindparam("why"), **tried)
                await conn.execute(stmt, [{"row_id": i, "why": reason[:decisions.TEXT_CHARS]} for i, reason in settlement.dead])
            if settlement.released:
                stmt = e.update().where(_ids_in(self.is_postgres, settlement.released), mine)
                await conn.execute(stmt.values(**decisions.released(now)))
            # the history before this settlement's own tombstones (a delivered deletion keeps its line)
            failed = [t for t in settlement.attempts if t.outcome != "delivered"]  # delivered: history reads events
            await history.record(conn, settlement.attempts, now, forgotten=await self._forgotten(conn, failed))
            if settlement.forgotten:
                await self._forget_deletions(conn, settlement.forgotten)

    async def _forgotten(self, conn: AsyncConnection, tried: Sequence[Attempt]) -> set[int]:
        """The rows of ``tried`` whose person was forgotten while the try ran: a forget deletes a person's
        history, and a try answered after it must not write the person's data (the call, Iterable's answer)
        back (``history.record`` counts it and writes no line). No statement when nothing failed."""
        if not tried:
            return set()
        return set((await conn.execute(sa.select(events.c.id).where(
            _ids_in(self.is_postgres, [t.row_id for t in tried]), sa.not_(NOT_FORGOTTEN)))).scalars())

    @staticmethod
    async def _forget_deletions(conn: AsyncConnection, ids: Sequence[int]) -> None:
        """Delivered deletions become tombstones too (``decisions.deletion_forgotten``)."""
        query = sa.select(events.c.id, events.c.status, events.c.mapped).where(events.c.id.in_(list(ids)),
                                                                               events.c.status == Status.DELIVERED)
        for row in (await conn.execute(query)).all():
            values = decisions.deletion_forgotten(Status(row.status), row.mapped)
            if values is not None:
                await conn.execute(events.update().where(events.c.id == row.id).values(**values))

    async def release_owner(self, owner: str, now: datetime) -> int:
        """Give back every lease ``owner`` holds (clean shutdown)."""
        self.leases.live.discard(owner)
        stmt = events.update().where(events.c.lease_owner == owner, events.c.status == decisions.LEASED)
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(**decisions.released(now)))
            return int(result.rowcount or 0)

    async def reap_expired(self, now: datetime) -> int:
        """Return rows whose lease expired (their process died) to the pool; the lease's end is judged by the
        database (``sync.ledger.leases``), never by ``now`` alone."""
        stmt = events.update().where(events.c.status == decisions.LEASED, events.c.lease_owner.is_not(None),
                                     self.leases.expired(now))  # ix_events_leased: only leased rows
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(**decisions.reaped()))
            return int(result.rowcount or 0)
