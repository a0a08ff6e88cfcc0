"""Operations: downtime and pauses, counts for metrics and the console, reading rows, deciding rows again,
requeue, purge, cursors and singleton jobs (SPEC sections 4, 9 and 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.errors import LedgerUnavailable
from sync.ledger import decisions, forget, history
from sync.ledger.base import NOT_FORGOTTEN, PAUSE_KINDS, SqlLedger, _lock_id, _row, _short
from sync.ledger.schema import attempts, cursors, downtime, events, replays
from sync.model import Direction, Downtime, Pending, Remapped, Row, Stats, Status


class Operations(SqlLedger):
    """Pauses, reading and operator commands."""

    # -- downtime ---------------------------------------------------------------------------------

    async def pause(self, direction: Direction, reason: str, now: datetime, *, kind: str = "paused") -> None:
        """Open a pause span for ``direction`` unless one of that kind is open already. ``kind`` is
        "paused" (the upstream refused the credentials) or "manual" (an operator, from the console)."""
        open_span = sa.select(downtime.c.id).where(downtime.c.direction == direction, downtime.c.ended_at.is_(None),
                                                   downtime.c.kind == kind)
        async with self._tx() as conn:
            if (await conn.execute(open_span)).first() is None:
                await conn.execute(downtime.insert().values(direction=direction, kind=kind, reason=reason[:2000],
                                                            started_at=now))

    async def resume(self, direction: Direction, now: datetime, *, kind: str = "paused") -> int:
        """Close the open pause spans of ``direction`` of one kind; return how many there were."""
        stmt = downtime.update().where(downtime.c.direction == direction, downtime.c.ended_at.is_(None),
                                       downtime.c.kind == kind)
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(ended_at=now))).rowcount or 0)

    async def held_by_operator(self, direction: Direction) -> str | None:
        """The reason an operator paused ``direction`` (None: not paused by hand)."""
        query = sa.select(downtime.c.reason).where(downtime.c.direction == direction, downtime.c.kind == "manual",
                                                   downtime.c.ended_at.is_(None)).limit(1)
        async with self._tx() as conn:
            return await conn.scalar(query)

    async def add_downtime(self, span: Downtime) -> None:
        """Record a finished span (a ledger outage is written once the ledger answers again)."""
        async with self._tx() as conn:
            await conn.execute(downtime.insert().values(direction=span.direction, kind=span.kind,
                                                        reason=span.reason[:2000], started_at=span.started_at,
                                                        ended_at=span.ended_at))

    async def downtime(self, direction: Direction, since: datetime) -> list[Downtime]:
        """Spans of ``direction`` still open or ended after ``since``."""
        query = sa.select(downtime).where(downtime.c.direction == direction).where(
            sa.or_(downtime.c.ended_at.is_(None), downtime.c.ended_at > since))
        async with self._tx() as conn:
            return [Downtime(direction=Direction(r.direction), kind=r.kind, reason=r.reason,
                             started_at=r.started_at, ended_at=r.ended_at) for r in (await conn.execute(query)).all()]

    # -- reading and operating ------------------------------------------------------------------

    async def stats(self) -> Stats:
        counts_q = sa.select(events.c.direction, events.c.status, sa.func.count()).group_by(
            events.c.direction, events.c.status
        )
        oldest_q = (
            sa.select(events.c.direction, sa.func.min(events.c.received_at))
            .where(events.c.status == Status.PENDING)
            .group_by(events.c.direction)
        )
        async with self._tx() as conn:
            counts = {(d, s): n for d, s, n in (await conn.execute(counts_q)).all()}
            oldest_rows = (await conn.execute(oldest_q)).all()
            paused = await self._paused(conn)
        return Stats(counts=counts, oldest_pending={d: t for d, t in oldest_rows if t}, paused=paused)

    async def pending(self) -> Pending:
        """Pending counts and oldest pending receive time per direction (reads only pending rows)."""
        query = (sa.select(events.c.direction, sa.func.count(), sa.func.min(events.c.received_at))
                 .where(events.c.status == Status.PENDING).group_by(events.c.direction))
        held = (sa.select(events.c.direction, sa.func.count()).where(events.c.status == Status.HELD)
                .group_by(events.c.direction))
        async with self._tx() as conn:
            found = (await conn.execute(query)).all()
            holding = {d: n for d, n in (await conn.execute(held)).all()}
        return Pending(counts={d: n for d, n, _ in found}, oldest={d: t for d, _, t in found if t}, held=holding)

    @staticmethod
    async def _paused(conn: AsyncConnection) -> dict[str, str]:
        query = sa.select(downtime.c.direction, downtime.c.reason).where(
            downtime.c.ended_at.is_(None), downtime.c.kind.in_(PAUSE_KINDS)).order_by(downtime.c.id)
        return {r.direction: r.reason for r in (await conn.execute(query)).all()}

    async def rows(
        self, *, status: Status | None = None, direction: Direction | None = None, limit: int = 50,
        ids: Sequence[int] = (), after_id: int = 0,
    ) -> list[Row]:
        """Rows of one status (or the given ids), in id order, ``limit`` at a time after ``after_id``."""
        query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        if status is not None:
            query = query.where(events.c.status == status)
        if ids:
            query = query.where(events.c.id.in_(list(ids)))
        if direction:
            query = query.where(events.c.direction == direction)
        async with self._tx() as conn:
            return [_row(r) for r in (await conn.execute(query)).mappings()]

    async def remap(self, changes: Sequence[Remapped], now: datetime) -> int:
        """Store rows decided again (``ledger retry --remap``): the new call, digest and status; a row that
        became pending is due now with a fresh retry window. Only rows still in the status they were read in, and
        not claimed meanwhile: a row being sent keeps the call it is being sent with."""
        count = 0
        unclaimed = self.leases.free(now)
        async with self._tx() as conn:
            for change in changes:
                stmt = events.update().where(events.c.id == change.id, events.c.status == change.was, unclaimed)
                stmt = stmt.values(**decisions.redecided(change, now))
                count += int((await conn.execute(stmt)).rowcount or 0)
        return count

    async def requeue(
        self, now: datetime, *, status: Status | None = None, ids: Sequence[int] = (), direction: Direction | None = None
    ) -> int:
        """Send dead rows again as recorded (``decisions.requeueable``, the rule of ``sync.requeue``): pending,
        due now, with a fresh retry window; ``received_at`` stays. Rows of another status, or a forgotten
        person's, are left as they are (a rejected or skipped row is decided again instead: ``remap``).
        """
        stmt = events.update()
        stmt = stmt.where(events.c.status == status) if status else stmt.where(events.c.id.in_(list(ids)))
        stmt = stmt.where(events.c.status == decisions.REQUEUED, NOT_FORGOTTEN)
        if direction:
            stmt = stmt.where(events.c.direction == direction)
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(**decisions.requeued(now), reason_class=None))).rowcount or 0)

    async def purge(self, older_than: datetime, *, chunk: int = 1000) -> int:
        """Delete terminal rows last changed before ``older_than``, ``chunk`` rows per transaction."""
        async with self._tx() as conn:
            await history.purge(conn, older_than)
        total = 0
        while True:
            ids = (
                sa.select(events.c.id)
                .where(events.c.status.in_(decisions.PURGED), events.c.updated_at < older_than)
                .limit(chunk)
            )
            async with self._tx() as conn:
                ids_list = [r.id for r in (await conn.execute(ids)).all()]
                if ids_list:  # with their history: on SQLite a later row may get a purged row's id again
                    for table in (attempts, replays):
                        await conn.execute(table.delete().where(table.c.event_id.in_(ids_list)))
                    await conn.execute(events.delete().where(events.c.id.in_(ids_list)))
            total += len(ids_list)
            if len(ids_list) < chunk:
                break
        while True:  # identity links go with the rows they served
            async with self._tx() as conn:
                if await forget.prune(conn, chunk=chunk) < chunk:
                    return total

    # -- cursors and singleton jobs -------------------------------------------------------------

    async def cursor(self, name: str) -> str | None:
        async with self._tx() as conn:
            return await conn.scalar(sa.select(cursors.c.position).where(cursors.c.name == name))

    async def set_cursor(self, name: str, position: str, now: datetime) -> None:
        """Write a cursor in one statement (an upsert): replicas starting together each write the mapping's
        digest, and a delete then an insert let two of them insert at once (a duplicate key killed one)."""
        upsert = (postgresql.insert if self.is_postgres else sqlite.insert)(cursors)
        upsert = upsert.values(name=name, position=position, updated_at=now).on_conflict_do_update(
            index_elements=["name"], set_={"position": upsert.excluded.position, "updated_at": upsert.excluded.updated_at})
        async with self._tx() as conn:
            await conn.execute(upsert)

    @asynccontextmanager
    async def singleton(self, name: str) -> AsyncIterator[bool]:
        """Yield whether this process may run job ``name`` now (one process at a time on PostgreSQL)."""
        if not self.is_postgres:
            yield True
            return
        lock = _lock_id(f"job:{name}")
        try:
            async with self.engine.connect() as conn:
                got = bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(lock))))
                await conn.commit()  # the lock is the session's: no transaction stays open (and idle) while the job runs
                try:
                    yield got
                finally:
                    if got:
                        await conn.scalar(sa.select(sa.func.pg_advisory_unlock(lock)))
                    await conn.commit()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError) as exc:
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc

    async def get(self, direction: Direction, key: str) -> Row | None:
        query = sa.select(events).where(events.c.direction == direction, events.c.key == key)
        async with self._tx() as conn:
            found = (await conn.execute(query)).mappings().first()
        return _row(found) if found else None
