"""Issue 20: SQLite records through one prepared statement run by the driver's writer thread, not through
SQLAlchemy's insert. The rows it stores must be the very rows SQLAlchemy stored, column by column, and it must
find the duplicates the ``RETURNING`` insert found."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.ledger import migrate
from sync.ledger.ingest import insert_in_writer_thread, insert_returning
from sync.ledger.store import Ledger, create_engine
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


async def stored(path: Path, insert: Any, batches: list[list[NewEvent]]) -> tuple[list[tuple[Any, ...]], list[set[str]]]:
    engine = create_engine(f"sqlite:///{path}")
    await migrate.upgrade(engine)
    ledger, answers = Ledger(engine), []
    try:
        for batch in batches:
            async with ledger._tx() as conn:
                persons = await ledger._people(conn, [e.identities for e in batch if e.identities])
                answers.append(await insert(conn, batch, NOW, persons))
    finally:
        await engine.dispose()
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM events ORDER BY id").fetchall(), answers


async def test_the_writer_thread_stores_exactly_what_sqlalchemy_stored(tmp_path: Path) -> None:
    first, again = rows(), [*rows()[1:3], NewEvent(direction=Direction.OUTBOUND, key="e", kind="track", payload={})]
    expected = await stored(tmp_path / "a.db", insert_returning, [first, again])
    found = await stored(tmp_path / "b.db", insert_in_writer_thread, [first, again])
    assert found == expected
    assert found[1] == [{"a", "b", "c", "d"}, {"e"}]  # the second batch's b and c were duplicates
    assert len(found[0]) == 6 and all(len(row) == len(found[0][0]) for row in found[0])


async def test_record_on_sqlite_answers_duplicates_within_and_across_commits(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/ledger.db")
    await migrate.upgrade(engine)
    ledger = Ledger(engine)
    try:
        assert await ledger.record(rows(), NOW) == set()
        event = NewEvent(direction=Direction.OUTBOUND, key="f", kind="track", payload={})
        assert await ledger.record([*rows()[:2], event, event], NOW) == {"a", "b"}
        assert sum((await ledger.stats()).counts.values()) == 6
    finally:
        await engine.dispose()
