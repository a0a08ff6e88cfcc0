"""What every part of the SQL ledger shares: the engine with its durability settings, the transaction that
turns database failures into ``LedgerUnavailable``, and the row and id helpers (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sync.errors import LedgerNotMigrated, LedgerUnavailable
from sync.ledger.decisions import FORGOTTEN_PREFIX
from sync.ledger.decisions import PAUSE_KINDS as PAUSE_KINDS
from sync.ledger.leases import Leases
from sync.ledger.schema import events
from sync.ledger.timeouts import DatabaseTimeouts
from sync.model import Direction, Row, Status
from sync.wire import stored_loads

SQLITE_BUSY_TIMEOUT_MS = 5000
# a forgotten person's rows hold tombstones: requeueing one would send a tombstone upstream (``decisions.forgotten``)
NOT_FORGOTTEN = sa.or_(events.c.user_key.is_(None), sa.not_(events.c.user_key.startswith(FORGOTTEN_PREFIX)))


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
            json_deserializer=stored_loads,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=10, max_overflow=5,
                               pool_timeout=timeouts.pool_seconds, connect_args=timeouts.connect_args(),
                               json_deserializer=stored_loads)



def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()



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



class SqlLedger:
    """The engine and the transaction every concern of the ledger runs in; database failures surface as
    ``LedgerUnavailable`` (a missing schema as ``LedgerNotMigrated``)."""

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
                TimeoutError, OSError, sqlite3.OperationalError) as exc:
            # sa.exc.TimeoutError: no free connection in the pool; sqlite3's own error: the record path runs
            # its insert on the driver in the writer thread (locked past the busy timeout, disk full)
            if _missing_table(exc):
                raise LedgerNotMigrated("the ledger schema is missing: run `python -m sync migrate`") from exc
            raise LedgerUnavailable(f"ledger unavailable: {_short(exc)}", outage=not refused(exc)) from exc

    async def close(self) -> None:
        await self.engine.dispose()

    # -- ingest ---------------------------------------------------------------------------------


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


def refused(exc: Exception) -> bool:
    """Whether the database refused a statement for the values in it (a data exception or an integrity
    violation: SQLSTATE class 22 or 23; SQLite's integrity and data errors), not for want of time or a
    connection."""
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError):
        return True
    state = getattr(exc, "sqlstate", None) or getattr(orig, "sqlstate", None)  # asyncpg's own, or as wrapped
    return isinstance(state, str) and state[:2] in ("22", "23")


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
