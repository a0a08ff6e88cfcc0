"""Forgetting a person (SPEC section 11) on the SQL ledger: thin statements around the decisions of
``sync.ledger.decisions`` (what a forget erases, which anonymous rows were the person's), which the in-memory
ledger applies too; and pruning the identity links no row names any more."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger.decisions import (
    HOLD_PREFIX,
    Stored,
    erased,
    forgetting,
    identity_hash,
    lookups,
    originals,
    scrub,
    spellings,
    visitors,
)
from sync.ledger.schema import attempts, consents, events, identities
from sync.model import Direction, Status

_COLUMNS = (events.c.id, events.c.direction, events.c.key, events.c.status, events.c.reason, events.c.payload,
            events.c.mapped, events.c.user_key)


def _stored(r: Any) -> Stored:
    return Stored(id=r.id, direction=Direction(r.direction), key=r.key, status=Status(r.status), reason=r.reason,
                  payload=r.payload if isinstance(r.payload, dict) else {}, mapped=r.mapped, user_key=r.user_key)


async def person_of(conn: AsyncConnection, identifier: str) -> str:
    """The person key ``identifier`` names (itself when no link holds it)."""
    query = sa.select(identities.c.person).where(identities.c.identifier.in_(lookups(identifier))).limit(1)
    return await conn.scalar(query) or identifier


async def forget_person(conn: AsyncConnection, person: str, now: datetime, *,
                        keep: tuple[Direction, str] | None, why: str) -> int:
    """Forget ``person`` in one transaction; ``keep`` is a deletion still to be sent (it gets the hash it will
    be forgotten with once delivered). Returns how many rows became tombstones."""
    idents = [r.identifier for r in (await conn.execute(
        sa.select(identities.c.identifier).where(identities.c.person == person))).all()] or [person]
    digest = identity_hash(idents)
    rows = [_stored(r) for r in (await conn.execute(
        sa.select(*_COLUMNS).where(events.c.user_key.in_(sorted({person, *idents}))))).all()]
    rows += await _anonymous_rows(conn, rows)
    changes = [(row.id, forgetting(row, idents, digest, now, keep=keep, why=why)) for row in rows]
    for row_id, values in changes:
        await conn.execute(events.update().where(events.c.id == row_id).values(**values))
    await conn.execute(identities.delete().where(identities.c.person == person))
    await conn.execute(consents.delete().where(consents.c.identifier.in_(idents)))
    await _forget_history(conn, [row.id for row in rows], idents)
    return erased(values for _, values in changes)


async def _forget_history(conn: AsyncConnection, ids: Sequence[int], idents: Sequence[str]) -> None:
    """The person's rows keep no history lines (the answers quoted there may name them), and another row's
    line that quotes them (a bulk answer lists every refused item) is scrubbed as a reason is."""
    for start in range(0, len(ids), 1000):
        await conn.execute(attempts.delete().where(attempts.c.event_id.in_(list(ids[start:start + 1000]))))
    detail = sa.func.lower(attempts.c.detail)
    quoting = sa.or_(*(detail.contains(form.lower(), autoescape=True) for form in spellings(idents)))
    for line in (await conn.execute(sa.select(attempts.c.id, attempts.c.detail).where(quoting))).all():
        await conn.execute(attempts.update().where(attempts.c.id == line.id).values(detail=scrub(line.detail, idents)))


async def _anonymous_rows(conn: AsyncConnection, rows: Sequence[Stored]) -> list[Stored]:
    """Held originals of the person's released rows, and rows still held under their anonymous ids."""
    found: list[Stored] = []
    keys, holds = sorted(originals(rows)), sorted(visitors(rows))
    for at in range(0, len(keys), 500):
        query = sa.select(*_COLUMNS).where(events.c.direction == Direction.OUTBOUND,
                                           events.c.key.in_(keys[at:at + 500]),
                                           events.c.user_key.startswith(HOLD_PREFIX))
        found += [_stored(r) for r in (await conn.execute(query)).all()]
    if holds:
        found += [_stored(r) for r in (await conn.execute(sa.select(*_COLUMNS).where(
            events.c.user_key.in_(holds), events.c.status == Status.HELD))).all()]
    seen = {row.id for row in rows}
    return [row for row in {r.id: r for r in found}.values() if row.id not in seen]


async def prune(conn: AsyncConnection, *, chunk: int = 1000) -> int:
    """Delete identity links whose person no row names any more (and consents no link names): after the rows
    they served are purged, nothing names the person. One chunk; returns how many links went."""
    orphans = (sa.select(identities.c.identifier)
               .where(~sa.exists().where(events.c.user_key == identities.c.person)).limit(chunk))
    found = [r.identifier for r in (await conn.execute(orphans)).all()]
    if found:
        await conn.execute(identities.delete().where(identities.c.identifier.in_(found)))
    await conn.execute(consents.delete().where(
        ~sa.exists().where(identities.c.identifier == consents.c.identifier)))
    return len(found)


async def deletions_pending(conn: AsyncConnection) -> int:
    """Deletion and forget rows not yet accepted by Iterable (``sync_deletions_pending``)."""
    query = sa.select(sa.func.count()).where(events.c.status == Status.PENDING, events.c.kind == "delete")
    return int(await conn.scalar(query) or 0)
