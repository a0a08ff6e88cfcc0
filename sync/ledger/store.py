"""The ledger on SQLAlchemy's async engine: SQLite (single process, WAL) or PostgreSQL (replicas)."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sync import people
from sync.errors import LedgerNotMigrated, LedgerUnavailable
from sync.ledger import forget, history, links
from sync.ledger.leases import Leases
from sync.ledger.schema import cursors, downtime, events, identities
from sync.ledger.timeouts import DatabaseTimeouts
from sync.model import (
    TERMINAL,
    Claim,
    Direction,
    Downtime,
    NewEvent,
    Pending,
    Queued,
    Remapped,
    Row,
    Settlement,
    Stats,
    Status,
    claimable,
)

SQLITE_BUSY_TIMEOUT_MS = 5000
PAUSE_KINDS = ("paused", "manual")  # downtime kinds that stop a direction (the other, "ledger", is an outage)
# a forgotten person's rows hold tombstones: requeueing one would send a tombstone upstream
NOT_FORGOTTEN = sa.or_(events.c.user_key.is_(None), sa.not_(events.c.user_key.startswith("forgotten:")))


def async_url(url: str) -> str:
    """Turn the plain URL of the config into one naming the async driver."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    for prefix in ("postgresql:", "postgres:"):
        if url.startswith(prefix):
            return "postgresql+asyncpg:" + url.removeprefix(prefix)
    return url


def create_engine(url: str, timeouts: DatabaseTimeouts | None = None) -> AsyncEngine:
    """An engine with the durability settings of SPEC section 4, and its database timeouts."""
    timeouts = timeouts or DatabaseTimeouts()
    if url.startswith("sqlite"):
        engine = create_async_engine(
            async_url(url), pool_size=1, max_overflow=0, pool_timeout=timeouts.pool_seconds,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=10, max_overflow=5,
                               pool_timeout=timeouts.pool_seconds, connect_args=timeouts.connect_args())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


# what a claim reads back: the lease columns it has just written are known, a row's payload is needed only
# when its call was not frozen at intake (rows recorded before revision 0004), and times come as the driver
# gives them (SQLite's text is parsed by ``_moment``, far cheaper than the generic type's parser)
_RAW_TIMES = ("received_at", "updated_at", "retry_from")
CLAIMED = [sa.type_coerce(c, sa.String()).label(c.name) if c.name in _RAW_TIMES else c for c in events.c
           if c.name not in ("payload", "next_attempt_at", "lease_owner", "lease_expires_at")] + [
    sa.type_coerce(sa.case((events.c.mapped.is_(None), events.c.payload)), sa.JSON).label("payload")]


def _moment(value: Any) -> datetime:
    """A time column read raw: PostgreSQL gives aware datetimes, SQLite naive UTC text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _row(mapping: Any) -> Row:
    return Row(
        id=mapping["id"],
        direction=Direction(mapping["direction"]),
        key=mapping["key"],
        kind=mapping["kind"],
        user_key=mapping["user_key"],
        payload=mapping["payload"] or {},
        status=Status(mapping["status"]),
        attempts=mapping["attempts"],
        next_attempt_at=mapping["next_attempt_at"],
        lease_owner=mapping["lease_owner"],
        lease_expires_at=mapping["lease_expires_at"],
        last_error=mapping["last_error"],
        reason=mapping["reason"],
        received_at=mapping["received_at"],
        updated_at=mapping["updated_at"],
        retry_from=mapping["retry_from"] or mapping["received_at"],
        mapped=mapping["mapped"],
        mapping_digest=mapping["mapping_digest"],
        name=mapping["name"],
    )


class Ledger:
    """Every operation is one transaction; database failures surface as ``LedgerUnavailable``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.leases = Leases(postgres=self.is_postgres)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError, sa.exc.TimeoutError,
                TimeoutError, OSError) as exc:  # sa.exc.TimeoutError: no free connection in the pool
            if _missing_table(exc):
                raise LedgerNotMigrated("the ledger schema is missing: run `python -m sync migrate`") from exc
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc

    async def close(self) -> None:
        await self.engine.dispose()

    # -- ingest ---------------------------------------------------------------------------------

    async def record(self, batch: Sequence[NewEvent], now: datetime, *,
                     decide: links.Decider | None = None) -> set[str]:
        """Insert new events in one transaction; return the keys that were already recorded.

        The first copy of a key wins (a later copy in the same batch is a duplicate). Events that
        carry identities get their person's key as ordering key. ``decide`` may decide rows again from what
        the ledger knows of their people, in the same transaction (``sync.ledger.links``).
        """
        unique: dict[tuple[Direction, str], NewEvent] = {}
        for e in batch:
            unique.setdefault((e.direction, e.key), e)
        if not unique:
            return set()
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(events)
        stmt = insert.on_conflict_do_nothing(index_elements=["direction", "key"]).returning(events.c.key)
        async with self._tx() as conn:
            if decide is not None:
                unique = {(e.direction, e.key): e for e in await links.decided(conn, list(unique.values()), decide)}
            persons = await self._people(conn, [e.identities for e in unique.values() if e.identities])
            values = [_insert_values(e, now, persons) for e in unique.values()]
            inserted = {r.key for r in (await conn.execute(stmt, values)).all()}
            await links.remember_consents(conn, [e for e in unique.values() if e.key in inserted], now)
            for e in unique.values():
                if e.replaces and e.key in inserted:
                    await conn.execute(events.update().where(events.c.direction == e.direction,
                                                             events.c.key.in_(list(e.replaces)),
                                                             events.c.status == Status.HELD)
                                       .values(status=Status.SKIPPED, reason=f"released as {e.key}", updated_at=now))
                if e.forgets and e.key in inserted:  # whatever outbound.deletion is: "skip" skips only the call
                    person = persons[e.identities[0]] if e.identities else e.user_key
                    if person:
                        keep = (e.direction, e.key) if e.status is Status.PENDING else None
                        await forget.forget_person(conn, person, now, keep=keep, why="user deleted")
        return {key for (_, key) in unique} - inserted

    async def people_known(self, identifiers: Sequence[str]) -> dict[str, links.Known]:
        """What the ledger knows of the people ``identifiers`` name (``sync.ledger.links``)."""
        async with self._tx() as conn:
            return await links.people_known(conn, identifiers)

    async def deletions_pending(self) -> int:
        async with self._tx() as conn:
            return await forget.deletions_pending(conn)

    async def held(self, keys: Sequence[str]) -> list[Row]:
        """Held rows of the given hold keys (``anon:<anonymousId>``), in received order."""
        if not keys:
            return []
        query = sa.select(events).where(events.c.status == Status.HELD, events.c.user_key.in_(list(keys)))
        async with self._tx() as conn:
            return [_row(r) for r in (await conn.execute(query.order_by(events.c.id))).mappings()]

    async def held_counts(self, keys: Sequence[str]) -> tuple[dict[str, int], int]:
        """Held rows per hold key, and in all (the bounds of SPEC section 11)."""
        per_key = (sa.select(events.c.user_key, sa.func.count()).where(events.c.status == Status.HELD,
                                                                      events.c.user_key.in_(list(keys) or [""]))
                   .group_by(events.c.user_key))
        async with self._tx() as conn:
            counts = {k: n for k, n in (await conn.execute(per_key)).all()}
            total = await conn.scalar(sa.select(sa.func.count()).where(events.c.status == Status.HELD))
        return counts, int(total or 0)

    async def expire_held(self, before: datetime, now: datetime, *, chunk: int = 1000) -> int:
        """Held rows received before ``before`` become skipped: their visitor was never identified."""
        total = 0
        while True:
            ids = sa.select(events.c.id).where(events.c.status == Status.HELD, events.c.received_at < before)
            async with self._tx() as conn:
                found = [r.id for r in (await conn.execute(ids.limit(chunk))).all()]
                if found:
                    await conn.execute(events.update().where(events.c.id.in_(found), events.c.status == Status.HELD)
                                       .values(status=Status.SKIPPED, reason="anonymous, never identified",
                                               updated_at=now))
            total += len(found)
            if len(found) < chunk:
                return total

    async def forget(self, identifier: str, now: datetime) -> int:
        """Forget one person on an operator's request (``forget``): every row's payload becomes a tombstone,
        their pending rows are skipped (``sync.ledger.forget``). ``identifier`` is a ``sync.people`` identifier."""
        async with self._tx() as conn:
            person = await forget.person_of(conn, identifier)
            return await forget.forget_person(conn, person, now, keep=None, why="user forgotten")

    async def _people(self, conn: AsyncConnection, groups: list[tuple[str, ...]]) -> dict[str, str]:
        """Link the identifiers of ``groups`` into people (merging where a group joins two); return them all.

        On PostgreSQL the whole step holds a lock, readers included: a row recorded under a person key while
        another replica merges that person away would otherwise keep the old key and escape the merge.
        """
        wanted = sorted({ident for group in groups for ident in group})
        if not wanted:
            return {}
        if self.is_postgres:
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id("people"))))
        known = await self._known(conn, wanted)
        links, merges = people.link(known, groups)
        for old, new in merges.items():
            await conn.execute(identities.update().where(identities.c.person == old).values(person=new))
            await conn.execute(events.update().where(events.c.user_key == old, events.c.status == Status.PENDING)
                               .values(user_key=new))
        if links:
            upsert = (postgresql.insert if self.is_postgres else sqlite.insert)(identities)
            upsert = upsert.on_conflict_do_update(index_elements=["identifier"],
                                                  set_={"person": upsert.excluded.person})
            await conn.execute(upsert, [{"identifier": k, "person": v} for k, v in links.items()])
        resolved = {ident: merges.get(person, person) for ident, person in known.items()}
        return {**resolved, **links}

    @staticmethod
    async def _known(conn: AsyncConnection, wanted: list[str]) -> dict[str, str]:
        known: dict[str, str] = {}
        for at in range(0, len(wanted), 500):
            query = sa.select(identities).where(identities.c.identifier.in_(wanted[at:at + 500]))
            known.update({r.identifier: r.person for r in (await conn.execute(query)).all()})
        return known

    # -- delivery -------------------------------------------------------------------------------

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
            return [Row(id=r.id, direction=Direction(r.direction), key=r.key, kind=r.kind, user_key=r.user_key,
                        payload=r.payload or {}, status=Status.PENDING, attempts=r.attempts, next_attempt_at=until,
                        lease_owner=claim.owner, lease_expires_at=until, last_error=r.last_error, reason=r.reason,
                        received_at=_moment(r.received_at), updated_at=_moment(r.updated_at),
                        retry_from=_moment(r.retry_from or r.received_at),
                        mapped=r.mapped, mapping_digest=r.mapping_digest, name=r.name) for r in found]

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
        """Each row's person key now, and whether it is still pending under ``owner``'s lease (a row skipped,
        forgotten or decided again since it was claimed is not); rows gone from the ledger are left out."""
        if not ids:
            return {}
        mine = sa.and_(events.c.status == Status.PENDING, events.c.lease_owner == owner)
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
                                     events.c.status == Status.PENDING)
        expires = self.leases.until(until, lease_seconds)
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(lease_expires_at=expires, next_attempt_at=until))).rowcount
                       or 0)

    async def settle(self, settlement: Settlement, now: datetime, *, owner: str) -> None:
        """Apply one delivery round's outcome; only pending rows ``owner`` still leases change. One statement
        per kind of outcome (the retries and dead letters as one statement with many parameter sets)."""
        e = events
        free = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        mine = sa.and_(e.c.status == Status.PENDING, e.c.lease_owner == owner)
        tried = {**free, "attempts": e.c.attempts + 1}
        one = e.c.id == sa.bindparam("row_id")
        async with self._tx() as conn:
            if settlement.delivered:
                stmt = e.update().where(_ids_in(self.is_postgres, settlement.delivered), mine)
                await conn.execute(stmt.values(status=Status.DELIVERED, last_error=None, **tried))
            if settlement.retry:
                stmt = e.update().where(one, mine).values(next_attempt_at=sa.bindparam("due"),
                                                          last_error=sa.bindparam("error"), **tried)
                await conn.execute(stmt, [{"row_id": i, "due": at, "error": error[:2000]}
                                          for i, at, error in settlement.retry])
            if settlement.dead:
                stmt = e.update().where(one, mine).values(status=Status.DEAD, reason=sa.bindparam("why"), **tried)
                await conn.execute(stmt, [{"row_id": i, "why": reason[:2000]} for i, reason in settlement.dead])
            if settlement.released:  # due again now (while leased, a row's next attempt is its lease expiry)
                stmt = e.update().where(_ids_in(self.is_postgres, settlement.released), mine)
                await conn.execute(stmt.values(next_attempt_at=now, **free))
            if settlement.forgotten:
                await self._forget_deletions(conn, settlement.forgotten)
            await history.record(conn, settlement.attempts, now)

    @staticmethod
    async def _forget_deletions(conn: AsyncConnection, ids: Sequence[int]) -> None:
        """Delivered deletions become tombstones too (they named the user until Iterable accepted them)."""
        query = sa.select(events.c.id, events.c.mapped).where(events.c.id.in_(list(ids)),
                                                              events.c.status == Status.DELIVERED)
        for row in (await conn.execute(query)).all():
            digest = (row.mapped or {}).get("forget_hash", "")
            await conn.execute(events.update().where(events.c.id == row.id).values(
                payload={"forgotten": True, "identifiers_sha256": digest}, mapped=None,
                user_key=f"forgotten:{digest[:32]}"))

    async def release_owner(self, owner: str, now: datetime) -> int:
        """Give back every lease ``owner`` holds (clean shutdown)."""
        self.leases.live.discard(owner)
        stmt = events.update().where(events.c.lease_owner == owner, events.c.status == Status.PENDING)
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(lease_owner=None, lease_expires_at=None, next_attempt_at=now,
                                                    updated_at=now))
            return int(result.rowcount or 0)

    async def reap_expired(self, now: datetime) -> int:
        """Return rows whose lease expired (their process died) to the pool; the lease's end is judged by the
        database (``sync.ledger.leases``), never by ``now`` alone."""
        stmt = events.update().where(events.c.status == Status.PENDING, events.c.lease_owner.is_not(None),
                                     self.leases.expired(now))  # ix_events_leased: only leased rows
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(lease_owner=None, lease_expires_at=None))
            return int(result.rowcount or 0)

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
                stmt = events.update().where(events.c.id == change.id, events.c.status == change.was, unclaimed).values(
                    status=change.status, mapped=change.mapped, mapping_digest=change.mapping_digest,
                    reason=change.reason, next_attempt_at=now, retry_from=now, lease_owner=None,
                    lease_expires_at=None, updated_at=now)
                count += int((await conn.execute(stmt)).rowcount or 0)
        return count

    async def requeue(
        self, now: datetime, *, status: Status | None = None, ids: Sequence[int] = (), direction: Direction | None = None
    ) -> int:
        """Make dead (or other terminal) rows pending again, due now, with a fresh retry window.

        ``received_at`` stays: it is when the event arrived.
        """
        stmt = events.update()
        stmt = stmt.where(events.c.status == status) if status else stmt.where(events.c.id.in_(list(ids)))
        stmt = stmt.where(events.c.status != Status.PENDING, NOT_FORGOTTEN)
        if direction:
            stmt = stmt.where(events.c.direction == direction)
        values = {"status": Status.PENDING, "next_attempt_at": now, "reason": None, "updated_at": now}
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(retry_from=now, **values))).rowcount or 0)

    async def purge(self, older_than: datetime, *, chunk: int = 1000) -> int:
        """Delete terminal rows last changed before ``older_than``, ``chunk`` rows per transaction."""
        async with self._tx() as conn:
            await history.purge(conn, older_than)
        total = 0
        while True:
            ids = (
                sa.select(events.c.id)
                .where(events.c.status.in_(TERMINAL), events.c.updated_at < older_than)
                .limit(chunk)
            )
            async with self._tx() as conn:
                ids_list = [r.id for r in (await conn.execute(ids)).all()]
                if ids_list:
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
        async with self._tx() as conn:
            await conn.execute(cursors.delete().where(cursors.c.name == name))
            await conn.execute(cursors.insert().values(name=name, position=position, updated_at=now))

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


def _insert_values(e: NewEvent, now: datetime, persons: dict[str, str]) -> dict[str, Any]:
    user_key = persons[e.identities[0]] if e.identities else e.user_key
    return {
        "direction": e.direction,
        "key": e.key,
        "kind": e.kind[:255],
        "user_key": user_key[:255] if user_key else None,
        "status": e.status,
        "attempts": 0,
        "next_attempt_at": now,
        "reason": e.reason,
        "payload": e.payload,
        "received_at": now,
        "updated_at": now,
        "retry_from": now,
        "mapped": e.mapped,
        "mapping_digest": e.mapping_digest,
        "name": history.event_name(e.direction, e.kind, e.payload),
        "reason_class": history.reason_class(e.reason) if e.reason else None,
    }


def _ids_in(postgres: bool, ids: Sequence[int]) -> Any:
    """``events.id IN (ids)`` as one parameter (a PostgreSQL array, or a JSON array SQLite unpacks): thousands
    of ids cost one bind, not thousands, and the statement compiles once."""
    return _in(events.c.id, list(ids), postgres, sa.BigInteger())


def _in(column: Any, values: list[Any], postgres: bool, kind: Any) -> Any:
    if postgres:
        return column == sa.any_(sa.bindparam(f"{column.name}_list", values, type_=postgresql.ARRAY(kind)))
    unpacked = sa.select(sa.column("value", kind)).select_from(
        sa.func.json_each(sa.bindparam(f"{column.name}_list", json.dumps(values))))
    return column.in_(unpacked.scalar_subquery())


def _lock_id(name: str) -> int:
    return zlib.crc32(name.encode()) - 2**31


def _missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
