"""Issue 20: the ledger records without SQLAlchemy's insert (SQLite: one prepared statement run by the driver's
writer thread; PostgreSQL: one statement over arrays). The rows stored must be the very rows SQLAlchemy stored,
column by column, and the duplicates found the ones its ``RETURNING`` insert found."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from sync.ledger.ingest import insert_in_writer_thread, insert_returning, insert_unnested
from sync.ledger.store import Ledger
from sync.model import Direction, NewEvent, Status

NOW = datetime(2026, 6, 1, 12, 30, 45, 123456, tzinfo=UTC)


def rows() -> list[NewEvent]:
    payload = {"type": "track", "event": "Played", "userId": "u1", "properties": {"n": 2**70, "x": 1.5,
                                                                                   "é": "\ud800 ü", "none": None}}
    return [
        NewEvent(direction=Direction.OUTBOUND, key="a", kind="track", payload=payload, user_key="u:u1",
                 identities=("u:u1", "e:ann@example.com"), mapped={"endpoint": "events/track", "body": {"id": "a"}},
                 mapping_digest="d" * 64),
        NewEvent(direction=Direction.OUTBOUND, key="b", kind="identify", payload={"type": "identify"}, user_key=None,
                 status=Status.SKIPPED, reason="no email or userId", label="no identifier"),
        NewEvent(direction=Direction.OUTBOUND, key="c", kind="k" * 300, payload={"body": [1, "x"]},
                 user_key="u" * 300, status=Status.REJECTED, reason="event: expected a JSON object"),
        NewEvent(direction=Direction.INBOUND, key="a", kind="emailOpen", payload={"eventName": "emailOpen"},
                 user_key="ann@example.com", mapped={"type": "track", "event": "Email Opened"}),
        NewEvent(direction=Direction.OUTBOUND, key="d", kind="page", payload={"type": "page", "name": "Home"},
                 user_key="e:bob@example.com", status=Status.HELD, reason="anonymous: held"),
    ]


async def stored(ledger: Ledger, insert: Any, batches: list[list[NewEvent]]
                 ) -> tuple[list[tuple[Any, ...]], list[set[str]]]:
    """The rows as the database holds them (JSON as its stored text), in id order, and each batch's answer."""
    answers = []
    for batch in batches:
        async with ledger._tx() as conn:
            persons = await ledger._people(conn, [e.identities for e in batch if e.identities])
            answers.append(await insert(conn, batch, NOW, persons))
    text = "::text" if ledger.is_postgres else ""
    async with ledger._tx() as conn:
        found = (await conn.execute(sa.text(f"SELECT *, payload{text} AS payload_text, mapped{text} AS mapped_text "
                                            "FROM events ORDER BY id"))).all()
        await conn.execute(sa.text("DELETE FROM events"))
        await conn.execute(sa.text("DELETE FROM identities"))
    return [tuple(row)[1:] for row in found], answers


async def test_the_fast_insert_stores_exactly_what_sqlalchemy_stored(ledger: Ledger) -> None:
    """SQLite: executemany in the writer thread; PostgreSQL: one insert over arrays. Against SQLAlchemy's
    RETURNING insert of the same batches, on the same database."""
    fast = insert_unnested if ledger.is_postgres else insert_in_writer_thread
    first, again = rows(), [*rows()[1:3], NewEvent(direction=Direction.OUTBOUND, key="e", kind="track", payload={})]
    expected = await stored(ledger, insert_returning, [first, again])
    found = await stored(ledger, fast, [first, again])
    assert found == expected
    assert found[1] == [{"a", "b", "c", "d"}, {"e"}]  # the second batch's b and c were duplicates
    assert len(found[0]) == 6


async def test_record_answers_duplicates_within_and_across_commits(ledger: Ledger) -> None:
    assert await ledger.record(rows(), NOW) == set()
    event = NewEvent(direction=Direction.OUTBOUND, key="f", kind="track", payload={})
    assert await ledger.record([*rows()[:2], event, event], NOW) == {"a", "b"}
    assert sum((await ledger.stats()).counts.values()) == 6


async def test_the_inserted_rows_are_told_apart_after_the_newest_row_was_deleted(ledger: Ledger) -> None:
    """SQLite reuses the largest id once its row is gone (retention purges old rows, never only the newest, but
    nothing here may rely on that): the rows inserted are still exactly those of this commit."""
    assert await ledger.record(rows(), NOW) == set()
    async with ledger._tx() as conn:
        await conn.execute(sa.text("DELETE FROM events WHERE id = (SELECT max(id) FROM events)"))  # "d"
    event = NewEvent(direction=Direction.OUTBOUND, key="g", kind="track", payload={})
    assert await ledger.record([rows()[4], rows()[0], event], NOW) == {"a"}
    async with ledger._tx() as conn:
        keys = (await conn.execute(sa.text("SELECT key FROM events ORDER BY id"))).scalars().all()
    assert keys == ["a", "b", "c", "a", "d", "g"]
