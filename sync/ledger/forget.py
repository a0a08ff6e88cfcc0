"""Forgetting a person (SPEC section 11): what a forget erases is decided by pure functions over plain values,
which both ledgers call (``sync.ledger.store.Ledger`` through the thin SQL below, and
``sync.ledger.memory.MemoryLedger``).

Every place that holds a person, and how it is forgotten:
- their rows in both directions (under their person key or any identifier): payloads become tombstones,
  reasons lose the identifiers, waiting rows are skipped;
- the held anonymous originals their released rows came from (``released as ...``), and rows still held
  under an ``anonymousId`` they used: tombstones too;
- identity links and their last consent: deleted (and pruned with the rows they served, ``prune``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import people
from sync.ledger.schema import consents, events, identities
from sync.model import Direction, Status

FORGOTTEN_PREFIX = "forgotten:"
HOLD_PREFIX = "anon:"  # sync.outbound.anonymous.HOLD_PREFIX (the ledger does not import the mapper)
RELEASED_SUFFIX = ":released"
WAITING = (Status.PENDING, Status.HELD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What a forget needs of one row."""

    id: int
    direction: Direction
    key: str
    status: Status
    reason: str | None
    payload: Mapping[str, Any]
    mapped: Mapping[str, Any] | None


def identity_hash(identifiers: Iterable[str]) -> str:
    """A sha256 of the person's identifiers: what a tombstone keeps to answer "was X forgotten?"."""
    return hashlib.sha256("\x1f".join(sorted(set(identifiers))).encode(errors="surrogatepass")).hexdigest()


def tombstone(digest: str) -> dict[str, Any]:
    return {"forgotten": True, "identifiers_sha256": digest}


def forgotten_key(digest: str) -> str:
    return f"{FORGOTTEN_PREFIX}{digest[:32]}"


def lookups(identifier: str) -> list[str]:
    """The stored identifiers that may name the person ``identifier`` names: its normal form, and the forms
    links recorded before identifiers were normalised may hold."""
    kind, _, value = identifier.partition(":")
    if kind == "e":
        return sorted({identifier, *(f"e:{f.lower()}" for f in people.forms(value))})
    return sorted({identifier, *(f"u:{f}" for f in people.forms(value))})


def erase(row: Stored, identifiers: Sequence[str], digest: str, now: datetime, why: str) -> dict[str, Any]:
    """The column values that forget one row: a tombstone payload, no call, no error, a scrubbed reason
    (``why`` for a row that was still waiting, which becomes skipped)."""
    waiting = row.status in WAITING
    values: dict[str, Any] = {
        "payload": tombstone(digest), "mapped": None, "last_error": None, "user_key": forgotten_key(digest),
        "reason": why if waiting else scrub(row.reason, identifiers), "updated_at": now,
        "lease_owner": None, "lease_expires_at": None}
    if waiting:
        values["status"] = Status.SKIPPED
    return values


def visitors(rows: Iterable[Stored]) -> set[str]:
    """The hold keys (``anon:<anonymousId>``) of the anonymous ids the person's events carried."""
    found = set()
    for row in rows:
        anonymous = row.payload.get("anonymousId") if isinstance(row.payload, Mapping) else None
        if isinstance(anonymous, str | int) and not isinstance(anonymous, bool) and str(anonymous).strip():
            found.add(f"{HOLD_PREFIX}{str(anonymous).strip()[:200]}")
    return found


def originals(rows: Iterable[Stored]) -> set[str]:
    """Keys of the held originals the person's released rows replaced (``<key>:released`` <- ``<key>``)."""
    return {row.key.removesuffix(RELEASED_SUFFIX) for row in rows
            if row.direction is Direction.OUTBOUND and row.key.endswith(RELEASED_SUFFIX)}


def scrub(text: str | None, identifiers: Iterable[str]) -> str | None:
    """``text`` with every spelling of the person's identifiers taken out (Iterable's reasons may quote them)."""
    if not text:
        return text
    for ident in identifiers:
        for form in people.forms(ident.partition(":")[2]):
            text = re.sub(re.escape(form), "[forgotten]", text, flags=re.IGNORECASE)
    return text


# -- the SQL ledger's side: thin statements around the decisions above --------------------------------------

_COLUMNS = (events.c.id, events.c.direction, events.c.key, events.c.status, events.c.reason, events.c.payload,
            events.c.mapped)


def _stored(r: Any) -> Stored:
    return Stored(id=r.id, direction=Direction(r.direction), key=r.key, status=Status(r.status), reason=r.reason,
                  payload=r.payload if isinstance(r.payload, dict) else {}, mapped=r.mapped)


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
    count = 0
    for row in rows:
        if keep == (row.direction, row.key):
            mapped = {**(row.mapped or {}), "forget_hash": digest}
            await conn.execute(events.update().where(events.c.id == row.id).values(mapped=mapped))
            continue
        await conn.execute(events.update().where(events.c.id == row.id).values(**erase(row, idents, digest, now, why)))
        count += 1
    await conn.execute(identities.delete().where(identities.c.person == person))
    await conn.execute(consents.delete().where(consents.c.identifier.in_(idents)))
    return count


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
