"""What the ledger knows of a person beyond their rows (SPEC section 14): the userId their identity links join
to an email, and their last end-user consent seen outbound. Pure choices (``known``) and thin SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger.model import NewEvent
from sync.ledger.schema import consents, identities


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """A person as the ledger knows them: a linked userId (``None``: none) and their last consent seen
    outbound (category id -> granted; ``None``: never seen)."""

    user_id: str | None = None
    consent: dict[str, bool] | None = None


class Decider(Protocol):
    """Decides rows again, inside the transaction that records them, from what the ledger knows of their
    people (``sync.intake.OnePerson``): ``asked`` names the identifiers to look up."""

    def asked(self, rows: Sequence[NewEvent]) -> list[str]: ...

    def __call__(self, rows: Sequence[NewEvent], found: Mapping[str, Known]) -> list[NewEvent]: ...


async def decided(conn: AsyncConnection, rows: list[NewEvent], decide: Decider | None) -> list[NewEvent]:
    """``rows`` as ``decide`` decides them, after one look-up of the identifiers it asks for."""
    wanted = decide.asked(rows) if decide else []
    return decide(rows, await people_known(conn, wanted)) if decide and wanted else rows


def known(asked: str, links: Mapping[str, str], consents_seen: Sequence[tuple[str, dict[str, bool]]]) -> Known:
    """``asked``'s userId and last consent, given ``links`` (identifier -> person) of the person's identifiers
    and the consents stored under them, newest first. Several userIds (an alias joined two): the smallest."""
    person = links.get(asked)
    if person is None:
        return Known()
    mine = sorted(ident for ident, p in links.items() if p == person)
    user_ids = [ident.removeprefix("u:") for ident in mine if ident.startswith("u:")]
    seen = [categories for ident, categories in consents_seen if ident in mine]
    return Known(user_id=user_ids[0] if user_ids else None, consent=seen[0] if seen else None)


def consent_rows(batch: Sequence[NewEvent], now: datetime) -> list[dict[str, Any]]:
    """One consent row per identifier of each event that carried consent (the last event of a batch wins)."""
    latest: dict[str, dict[str, bool]] = {}
    for e in batch:
        if e.consent is not None and not e.forgets:
            latest.update(dict.fromkeys(e.identities, e.consent))
    return [{"identifier": k, "categories": v, "updated_at": now} for k, v in latest.items()]


async def remember_consents(conn: AsyncConnection, batch: Sequence[NewEvent], now: datetime) -> None:
    """Store the consent the events of ``batch`` carried, under each of their identifiers."""
    values = consent_rows(batch, now)
    if not values:
        return
    postgres = conn.dialect.name == "postgresql"
    upsert = (postgresql.insert if postgres else sqlite.insert)(consents)
    upsert = upsert.on_conflict_do_update(index_elements=["identifier"], set_={
        "categories": upsert.excluded.categories, "updated_at": upsert.excluded.updated_at})
    await conn.execute(upsert, values)


async def people_known(conn: AsyncConnection, asked: Sequence[str]) -> dict[str, Known]:
    """For each identifier in ``asked``: the userId its person is linked to and their last consent. One
    statement: the asked links, every link of the same people, and the consents stored under those."""
    wanted = sorted(set(asked))
    if not wanted:
        return {}
    ask, mine = identities.alias("ask"), identities.alias("mine")
    query = (sa.select(mine.c.identifier, mine.c.person, consents.c.categories, consents.c.updated_at)
             .select_from(ask.join(mine, mine.c.person == ask.c.person)
                          .outerjoin(consents, consents.c.identifier == mine.c.identifier))
             .where(ask.c.identifier.in_(wanted)))
    found = (await conn.execute(query)).all()
    links = {r.identifier: r.person for r in found}
    seen = [(r.identifier, r.categories) for r in sorted((r for r in found if r.categories is not None),
                                                         key=lambda r: r.updated_at, reverse=True)]
    return {ident: known(ident, links, seen) for ident in wanted}
