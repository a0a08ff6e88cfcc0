"""What the ledger knows of a person beyond their rows (SPEC section 14): the userId their identity links join
to an email, and their last end-user consent seen outbound. Pure choices (``sync.model.known``,
``sync.ledger.decisions.consent_rows``) and thin SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.ledger.decisions import consent_rows
from sync.ledger.schema import consents, events, identities
from sync.model import EMAIL_KINDS, EMAIL_STATUSES, Direction, NewEvent, last_email
from sync.model import Decider as Decider
from sync.model import Known as Known
from sync.model import known as known


async def decided(conn: AsyncConnection, rows: list[NewEvent], decide: Decider | None) -> list[NewEvent]:
    """``rows`` as ``decide`` decides them, after one look-up of the identifiers it asks for."""
    wanted = decide.asked(rows) if decide else []
    return decide(rows, await people_known(conn, wanted, emails=decide.emails)) if decide and wanted else rows


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


async def people_known(conn: AsyncConnection, asked: Sequence[str], *, emails: bool = False) -> dict[str, Known]:
    """For each identifier in ``asked``: the userId its person is linked to and their last consent (one
    statement: the asked links, every link of the same people, and the consents stored under those); with
    ``emails``, also the email their latest user write named (``Known.email``: one more statement)."""
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
    last = await last_emails(conn, {links[ident] for ident in wanted if ident in links}) if emails else {}
    return {ident: known(ident, links, seen, last) for ident in wanted}


async def last_emails(conn: AsyncConnection, persons: set[str]) -> dict[str, str]:
    """person -> the email their latest outbound row of ``EMAIL_KINDS`` (pending or delivered) named
    (``sync.model.last_email``). One statement: the newest such row of each person (``ix_events_person``)."""
    if not persons:
        return {}
    newest = (sa.select(sa.func.max(events.c.id))
              .where(events.c.direction == Direction.OUTBOUND, events.c.user_key.in_(sorted(persons)),
                     events.c.kind.in_(EMAIL_KINDS), events.c.status.in_(EMAIL_STATUSES))
              .group_by(events.c.user_key))
    found = await conn.execute(sa.select(events.c.user_key, events.c.mapped).where(events.c.id.in_(newest)))
    return {r.user_key: email for r in found.all() if (email := last_email(r.mapped))}
