"""The ledger on SQLAlchemy's async engine: SQLite (single process, WAL) or PostgreSQL (replicas)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sync.errors import LedgerNotMigrated, LedgerUnavailable
from sync.ledger.model import TERMINAL, Claim, Direction, NewEvent, Row, Settlement, Stats, Status
from sync.ledger.schema import cursors, events, pauses

SQLITE_BUSY_TIMEOUT_MS = 5000


def async_url(url: str) -> str:
    """Turn the plain URL of the config into one naming the async driver."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    for prefix in ("postgresql:", "postgres:"):
        if url.startswith(prefix):
            return "postgresql+asyncpg:" + url.removeprefix(prefix)
    return url


def create_engine(url: str) -> AsyncEngine:
    """An engine with the durability settings of SPEC section 4."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            async_url(url), pool_size=1, max_overflow=0, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=10, max_overflow=5)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _row(mapping: Any) -> Row:
    return Row(
        id=mapping["id"],
        direction=Direction(mapping["direction"]),
        key=mapping["key"],
        kind=mapping["kind"],
        user_key=mapping["user_key"],
        payload=mapping["payload"],
        status=Status(mapping["status"]),
        attempts=mapping["attempts"],
        next_attempt_at=mapping["next_attempt_at"],
        lease_owner=mapping["lease_owner"],
        lease_expires_at=mapping["lease_expires_at"],
        last_error=mapping["last_error"],
        reason=mapping["reason"],
        received_at=mapping["received_at"],
        updated_at=mapping["updated_at"],
    )


class Ledger:
    """Every operation is one transaction; database failures surface as ``LedgerUnavailable``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError, OSError) as exc:
            if _missing_table(exc):
                raise LedgerNotMigrated("the ledger schema is missing: run `python -m sync migrate`") from exc
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc

    async def close(self) -> None:
        await self.engine.dispose()

    # -- ingest ---------------------------------------------------------------------------------

    async def record(self, batch: Sequence[NewEvent], now: datetime) -> set[str]:
        """Insert new events in one transaction; return the keys that were already recorded."""
        unique = {(e.direction, e.key): e for e in batch}
        if not unique:
            return set()
        values = [_insert_values(e, now) for e in unique.values()]
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(events)
        stmt = insert.on_conflict_do_nothing(index_elements=["direction", "key"]).returning(events.c.key)
        async with self._tx() as conn:
            inserted = {r.key for r in (await conn.execute(stmt, values)).all()}
        return {key for (_, key) in unique} - inserted

    # -- delivery -------------------------------------------------------------------------------

    async def claim(self, claim: Claim, now: datetime) -> list[Row]:
        """Lease due rows in id order, never a row whose user has an earlier row still waiting."""
        e, b = events.alias("e"), events.alias("b")
        waiting = (  # per user, the first pending row that is not due yet or leased: later rows wait behind it
            sa.select(b.c.user_key, sa.func.min(b.c.id).label("first_id"))
            .where(b.c.direction == claim.direction, b.c.status == Status.PENDING, b.c.user_key.is_not(None))
            .where(sa.or_(b.c.next_attempt_at > now, b.c.lease_expires_at > now))
            .group_by(b.c.user_key)
            .cte("waiting")
            .prefix_with("MATERIALIZED", dialect="postgresql")  # once, not once per candidate row
        )
        due = (
            sa.select(e.c.id)
            .select_from(e.outerjoin(waiting, waiting.c.user_key == e.c.user_key))
            .where(e.c.direction == claim.direction, e.c.status == Status.PENDING, e.c.next_attempt_at <= now)
            .where(sa.or_(e.c.lease_expires_at.is_(None), e.c.lease_expires_at <= now))
            .where(sa.or_(waiting.c.first_id.is_(None), e.c.id < waiting.c.first_id))
            .order_by(e.c.id)
            .limit(claim.limit)
        )
        if self.is_postgres:
            due = due.with_for_update(skip_locked=True, of=e)
        lease = {"lease_owner": claim.owner, "lease_expires_at": now + timedelta(seconds=claim.lease_seconds)}
        async with self._tx() as conn:
            if self.is_postgres:  # one claimer per direction at a time keeps per-user order across replicas
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(f"claim:{claim.direction}"))))
            ids = [r.id for r in (await conn.execute(due)).all()]
            if not ids:
                return []
            await conn.execute(events.update().where(events.c.id.in_(ids)).values(**lease))
            rows = (await conn.execute(sa.select(events).where(events.c.id.in_(ids)).order_by(events.c.id))).mappings()
            return [_row(r) for r in rows]

    async def settle(self, settlement: Settlement, now: datetime) -> None:
        """Apply one delivery round's outcome; only pending rows change."""
        free = {"lease_owner": None, "lease_expires_at": None, "updated_at": now}
        pending = events.c.status == Status.PENDING
        tried = {**free, "attempts": events.c.attempts + 1}
        async with self._tx() as conn:
            if settlement.delivered:
                ids = list(settlement.delivered)
                stmt = events.update().where(events.c.id.in_(ids), pending)
                await conn.execute(stmt.values(status=Status.DELIVERED, last_error=None, **tried))
            for row_id, at, error in settlement.retry:
                stmt = events.update().where(events.c.id == row_id, pending)
                await conn.execute(stmt.values(next_attempt_at=at, last_error=error[:2000], **tried))
            for row_id, reason in settlement.dead:
                stmt = events.update().where(events.c.id == row_id, pending)
                await conn.execute(stmt.values(status=Status.DEAD, reason=reason[:2000], **tried))
            if settlement.released:
                ids = list(settlement.released)
                await conn.execute(events.update().where(events.c.id.in_(ids), pending).values(**free))

    async def release_owner(self, owner: str, now: datetime) -> int:
        """Give back every lease ``owner`` holds (clean shutdown)."""
        stmt = events.update().where(events.c.lease_owner == owner, events.c.status == Status.PENDING)
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(lease_owner=None, lease_expires_at=None, updated_at=now))
            return int(result.rowcount or 0)

    async def reap_expired(self, now: datetime) -> int:
        """Return rows whose lease expired (their process died) to the pool."""
        stmt = events.update().where(events.c.status == Status.PENDING, events.c.lease_expires_at <= now)
        async with self._tx() as conn:
            result = await conn.execute(stmt.values(lease_owner=None, lease_expires_at=None))
            return int(result.rowcount or 0)

    # -- pause ----------------------------------------------------------------------------------

    async def pause(self, direction: Direction, reason: str, now: datetime) -> None:
        async with self._tx() as conn:
            await conn.execute(pauses.delete().where(pauses.c.direction == direction))
            await conn.execute(pauses.insert().values(direction=direction, reason=reason, since=now))

    async def resume(self, direction: Direction) -> None:
        async with self._tx() as conn:
            await conn.execute(pauses.delete().where(pauses.c.direction == direction))

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
            paused = {r.direction: r.reason for r in (await conn.execute(sa.select(pauses))).all()}
        return Stats(counts=counts, oldest_pending={d: t for d, t in oldest_rows if t}, paused=paused)

    async def rows(
        self, *, status: Status, direction: Direction | None = None, limit: int = 50
    ) -> list[Row]:
        query = sa.select(events).where(events.c.status == status).order_by(events.c.id).limit(limit)
        if direction:
            query = query.where(events.c.direction == direction)
        async with self._tx() as conn:
            return [_row(r) for r in (await conn.execute(query)).mappings()]

    async def requeue(
        self, now: datetime, *, status: Status | None = None, ids: Sequence[int] = (), direction: Direction | None = None
    ) -> int:
        """Make dead (or other terminal) rows pending again, due now."""
        stmt = events.update()
        stmt = stmt.where(events.c.status == status) if status else stmt.where(events.c.id.in_(list(ids)))
        stmt = stmt.where(events.c.status != Status.PENDING)
        if direction:
            stmt = stmt.where(events.c.direction == direction)
        values = {"status": Status.PENDING, "next_attempt_at": now, "reason": None, "updated_at": now}
        async with self._tx() as conn:
            return int((await conn.execute(stmt.values(received_at=now, **values))).rowcount or 0)

    async def purge(self, older_than: datetime, *, chunk: int = 1000) -> int:
        """Delete terminal rows last changed before ``older_than``, ``chunk`` rows per transaction."""
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
                try:
                    yield got
                finally:
                    if got:
                        await conn.scalar(sa.select(sa.func.pg_advisory_unlock(lock)))
                    await conn.commit()
        except (sa.exc.DBAPIError, OSError) as exc:
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}") from exc

    async def get(self, direction: Direction, key: str) -> Row | None:
        query = sa.select(events).where(events.c.direction == direction, events.c.key == key)
        async with self._tx() as conn:
            found = (await conn.execute(query)).mappings().first()
        return _row(found) if found else None


def _insert_values(e: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "direction": e.direction,
        "key": e.key,
        "kind": e.kind[:255],
        "user_key": e.user_key[:255] if e.user_key else None,
        "status": e.status,
        "attempts": 0,
        "next_attempt_at": now,
        "reason": e.reason,
        "payload": e.payload,
        "received_at": now,
        "updated_at": now,
    }


def _lock_id(name: str) -> int:
    return zlib.crc32(name.encode()) - 2**31


def _missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
