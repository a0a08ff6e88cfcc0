"""Ingest: recording new events once (the idempotency record), linking their people, the anonymous hold and
an operator's forget (SPEC sections 4 and 11)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import people
from sync.errors import LedgerUnavailable
from sync.ledger import decisions, forget, history, links
from sync.ledger.base import SqlLedger, _lock_id, _row, refused
from sync.ledger.schema import events, identities
from sync.model import Direction, NewEvent, Row, Status


class Ingest(SqlLedger):
    """Recording and the anonymous hold."""

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
        inserted: set[str] = set()
        async with self._tx() as conn:
            if decide is not None:
                unique = {(e.direction, e.key): e for e in await links.decided(conn, list(unique.values()), decide)}
            for part in decisions.up_to_each_deletion(list(unique.values())):
                inserted |= await self._record_part(conn, part, now)
        return {key for (_, key) in unique} - inserted

    async def _record_part(self, conn: AsyncConnection, part: list[NewEvent], now: datetime) -> set[str]:
        """Insert rows of one batch, up to and including a deletion, then apply it: a deletion forgets what came
        before it; the rows after it in the same batch are recorded after it, as a new person (SPEC section 11)."""
        persons = await self._people(conn, [e.identities for e in part if e.identities])
        insert = insert_unnested if self.is_postgres else insert_in_writer_thread
        inserted = await insert(conn, part, now, persons)
        await links.remember_consents(conn, [e for e in part if e.key in inserted], now)
        for e in part:
            if e.replaces and e.key in inserted:
                await conn.execute(events.update().where(events.c.direction == e.direction,
                                                         events.c.key.in_(list(e.replaces)),
                                                         events.c.status == decisions.HOLD)
                                   .values(**decisions.release_of(e, now)))
            if e.forgets and e.key in inserted:  # whatever outbound.deletion is: "skip" skips only the call
                person = persons[e.identities[0]] if e.identities else e.user_key
                if person:
                    keep = (e.direction, e.key) if e.status is Status.PENDING else None
                    await forget.forget_person(conn, person, now, keep=keep, why="user deleted")
        return inserted

    async def people_known(self, identifiers: Sequence[str], *, emails: bool = False) -> dict[str, links.Known]:
        """What the ledger knows of the people ``identifiers`` name (``sync.ledger.links``)."""
        async with self._tx() as conn:
            return await links.people_known(conn, identifiers, emails=emails)

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
                                       .values(**decisions.hold_expired(now)))
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
            await conn.execute(events.update().where(events.c.user_key == old, events.c.status == decisions.MERGED)
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


async def insert_returning(conn: AsyncConnection, rows: Sequence[NewEvent], now: datetime,
                           persons: dict[str, str]) -> set[str]:
    """Insert ``rows`` (first copy of each key wins) through SQLAlchemy; return the keys inserted."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(events)
    stmt = insert.on_conflict_do_nothing().returning(events.c.key)  # either idempotency key
    values = [_insert_values(e, now, persons) for e in rows]
    return {r.key for r in (await conn.execute(stmt, values)).all()}


_COLUMNS = ("direction", "key", "kind", "user_key", "status", "attempts", "next_attempt_at", "reason", "payload",
            "received_at", "updated_at", "retry_from", "mapped", "mapping_digest", "name", "reason_class", "also_key")
_SQLITE_INSERT = (f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                  "ON CONFLICT DO NOTHING")  # either idempotency key


async def insert_in_writer_thread(conn: AsyncConnection, rows: Sequence[NewEvent], now: datetime,
                                  persons: dict[str, str]) -> set[str]:
    """``insert_returning`` on SQLite, with the same stored values (the columns' own bind conversions, applied on
    the loop to plain tuples), but one prepared statement run for every row by the driver's writer thread
    (aiosqlite's ``executemany``): no statement compiled and no per-row processing by SQLAlchemy.

    The rows inserted are those with an id above the largest before the insert: the transaction is the only
    writer (SQLite takes one writer at a time, and the ledger holds its file against a second process)."""
    dialect = conn.dialect
    moment = events.c.received_at.type.bind_processor(dialect)
    encode = events.c.payload.type.bind_processor(dialect)
    if moment is None or encode is None:  # SQLite's DATETIME and JSON both convert: a different dialect
        return await insert_returning(conn, rows, now, persons)
    when = moment(now)
    before = (await conn.execute(sa.select(sa.func.max(events.c.id)))).scalar() or 0
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise LedgerUnavailable("the SQLite connection is closed")
    cursor = await driver.executemany(_SQLITE_INSERT, [_row_values(e, when, persons, encode) for e in rows])
    await cursor.close()
    return set((await conn.execute(sa.select(events.c.key).where(events.c.id > before))).scalars())


_PG_TYPES = ("text", "text", "text", "text", "text", "int4", "timestamptz", "text", "text", "timestamptz",
             "timestamptz", "timestamptz", "text", "text", "text", "text", "text")
_PG_CASTS = {"payload": "::json", "mapped": "::json"}
_PG_INSERT = (f"INSERT INTO events ({', '.join(_COLUMNS)}) "
              f"SELECT {', '.join(c + _PG_CASTS.get(c, '') for c in _COLUMNS)} FROM unnest("
              + ", ".join(f"${n}::{t}[]" for n, t in enumerate(_PG_TYPES, 1))
              + f") WITH ORDINALITY AS given({', '.join(_COLUMNS)}, position) ORDER BY position "
              "ON CONFLICT DO NOTHING RETURNING key")  # either idempotency key


async def insert_unnested(conn: AsyncConnection, rows: Sequence[NewEvent], now: datetime,
                          persons: dict[str, str]) -> set[str]:
    """``insert_returning`` on PostgreSQL, with the same stored values (JSON as SQLAlchemy's own encoder
    writes it), as one statement over one array per column: asyncpg encodes 16 arrays, not 16 parameters per
    row, and SQLAlchemy compiles nothing per commit. Rows get their ids in the order given."""
    encode = events.c.payload.type.bind_processor(conn.dialect)
    driver = (await conn.get_raw_connection()).driver_connection
    if encode is None or driver is None:
        return await insert_returning(conn, rows, now, persons)
    if not driver.is_in_transaction():  # SQLAlchemy begins on its first statement: make this one part of it
        await conn.execute(sa.text("SELECT 1"))
    values = [_row_values(e, now.astimezone(UTC), persons, encode) for e in rows]
    columns = [list(column) for column in zip(*values, strict=True)]
    try:
        return {r[0] for r in await driver.fetch(_PG_INSERT, *columns)}
    except Exception as exc:  # the driver's own errors, converted as SQLAlchemy's DBAPIError would be
        raise LedgerUnavailable(f"ledger unavailable: {str(exc).splitlines()[0][:300]}",
                                outage=not refused(exc)) from exc


_TEXT: dict[Direction | Status, str] = {**{d: d.value for d in Direction}, **{s: s.value for s in Status}}


def _row_values(e: NewEvent, when: Any, persons: dict[str, str], encode: Any) -> tuple[Any, ...]:
    """One row's parameters in ``_COLUMNS`` order, as SQLAlchemy binds ``_insert_values`` (``when``: ``now``
    as the time columns bind it)."""
    user_key = persons[e.identities[0]] if e.identities else e.user_key
    return (_TEXT[e.direction], e.key, e.kind[:255], user_key[:255] if user_key else None, _TEXT[e.status], 0, when,
            e.reason, encode(e.payload), when, when, when, encode(e.mapped), e.mapping_digest,
            history.event_name(e.direction, e.kind, e.payload),
            history.reason_class(e.reason) if e.reason else None, e.also)


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
        "also_key": e.also,
    }
