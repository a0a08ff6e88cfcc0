"""Revision 0009: rows recorded before the mapping was stored (``mapped`` NULL) are decided once, when the
ledger is migrated, with the configured mapping (the default one when Alembic runs without the config)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.config import Config, mapping_digest
from sync.engine.intake import inbound_row, outbound_options, outbound_row
from sync.ledger import migrate
from sync.ledger.schema import UTCDateTime
from sync.ledger.store import create_engine
from sync.segment.spec import validate
from tests.conftest import _empty_pg
from tests.support import make_config

RECEIVED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)

# the columns revision 0008 has (the test's rows are written as a ledger at 0008 held them: ``mapped`` SQL NULL
# on rows recorded before revision 0004, JSON null on a row intake recorded without a call)
events = sa.table(
    "events",
    sa.column("id", sa.Integer()), sa.column("direction", sa.String()), sa.column("key", sa.String()),
    sa.column("kind", sa.String()), sa.column("user_key", sa.String()), sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()), sa.column("received_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()), sa.column("next_attempt_at", UTCDateTime()),
    sa.column("mapped", sa.JSON(none_as_null=True)), sa.column("mapping_digest", sa.String()), sa.column("reason", sa.Text()),
    sa.column("reason_class", sa.String()), sa.column("attempts", sa.Integer()),
)
attempts = sa.table("attempts", sa.column("event_id", sa.Integer()), sa.column("outcome", sa.String()),
                    sa.column("detail", sa.Text()))


def track(n: int, name: str = "Signed Up", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": f"u{n}", "messageId": f"m{n}", "properties": {"plan": "pro"},
            "timestamp": "2026-11-20T09:29:00Z", "receivedAt": "2026-11-20T09:30:00Z", **extra}


OPEN = {"email": "a@example.com", "eventName": "emailOpen", "messageId": "e1", "createdAt": "2026-11-20 09:29:00 +00:00",
        "dataFields": {"campaignId": 5}}


def shaped(ledger_url: str) -> Config:
    """A configured mapping that differs from the default one, outbound and inbound."""
    return make_config(ledger_url=ledger_url, outbound={"events": {"Signed Up": {"name": "signup"}}},
                       inbound={"events": {"emailOpen": {"name": "Opened It"}}})


async def at_0008(ledger_url: str) -> AsyncEngine:
    if ledger_url.startswith("postgresql"):
        await _empty_pg(ledger_url)
    engine = create_engine(ledger_url)

    def upgrade(connection: sa.Connection) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
    return engine


async def insert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    base = {"user_key": None, "status": "pending", "mapped": None, "mapping_digest": None, "reason": None,
            "reason_class": None, "attempts": 0, "direction": "outbound", "kind": "track"}
    async with engine.begin() as conn:
        await conn.execute(events.insert(), [{**base, "received_at": RECEIVED, "updated_at": RECEIVED,
                                              "next_attempt_at": RECEIVED, **row} for row in rows])


async def stored(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(events).order_by(events.c.id))).mappings().all()
        notes = (await conn.execute(sa.select(attempts))).mappings().all()
    by_key = {row["key"]: dict(row) for row in rows}
    for note in notes:
        key = next(k for k, r in by_key.items() if r["id"] == note["event_id"])
        by_key[key].setdefault("notes", []).append(note["detail"])
    return by_key


async def test_rows_without_a_frozen_call_are_decided_with_the_configured_mapping(ledger_url: str) -> None:
    config = shaped(ledger_url)
    digest = mapping_digest(config)
    engine = await at_0008(ledger_url)
    try:
        await insert(engine, [
            {"key": "m1", "user_key": "u1", "payload": track(1)},  # pending: gets its call
            {"key": "m2", "user_key": "u2", "payload": track(2), "status": "dead",  # dead: its call, stays dead
             "reason": "gave up after 72 hours: HTTP 503"},
            {"key": "e1", "direction": "inbound", "kind": "emailOpen", "user_key": "a@example.com",
             "payload": OPEN},  # inbound: the track, timed by when it was received
            {"key": "m3", "user_key": "u3", "payload": track(3, type="group", groupId="g")},  # skipped
            # a rejected row requeued as recorded: it died of ``cannot map the event: KeyError('type')``
            {"key": "m4", "payload": {"messageId": "m4", "userId": "u4", "event": "x"}, "mapped": sa.JSON.NULL},
            {"key": "m5", "user_key": "u5", "payload": track(5), "status": "delivered"},  # its call, for a replay
            {"key": "m6", "user_key": "u6", "payload": {"type": "track"}, "status": "rejected",
             "reason": "event: messageId is required"},  # never had a call: untouched
            {"key": "m7", "user_key": "forgotten:abc", "payload": {}},  # a forgotten person's row: untouched
            {"key": "m8", "user_key": "u8", "payload": track(8), "mapped": {"endpoint": "events/track",
             "body": {"eventName": "as recorded"}}, "mapping_digest": "old"},  # frozen at intake: untouched
        ])
        await migrate.upgrade(engine, config)
        await migrate.ensure_current(engine)
        rows = await stored(engine)
    finally:
        await engine.dispose()

    options = outbound_options(config)
    signed_up = outbound_row(validate(track(1)), options, digest).mapped
    assert signed_up is not None and signed_up["body"]["eventName"] == "signup"  # the configured name
    assert (rows["m1"]["status"], rows["m1"]["mapped"], rows["m1"]["mapping_digest"]) == ("pending", signed_up, digest)
    assert "under the configured mapping" in rows["m1"]["notes"][0]

    assert (rows["m2"]["status"], rows["m2"]["reason"]) == ("dead", "gave up after 72 hours: HTTP 503")
    assert rows["m2"]["mapped"] == outbound_row(validate(track(2)), options, digest).mapped

    opened = inbound_row(OPEN, event_names=config.inbound.event_names, now=RECEIVED, mapping=config.inbound.mapping)
    assert rows["e1"]["mapped"] == opened.mapped and rows["e1"]["mapped"]["event"] == "Opened It"

    assert (rows["m3"]["status"], rows["m3"]["reason"]) == ("skipped", "group is not supported by Iterable")
    assert rows["m4"]["status"] == "rejected" and "type" in rows["m4"]["reason"]
    assert rows["m4"]["notes"] == [f"recorded before the mapping was stored; decided when the ledger was migrated "
                                   f"(revision 0009) under the configured mapping {digest[:12]}: rejected: "
                                   f"{rows['m4']['reason']}"]
    assert (rows["m5"]["status"], rows["m5"]["updated_at"]) == ("delivered", RECEIVED) and "notes" not in rows["m5"]
    assert rows["m5"]["mapped"] == outbound_row(validate(track(5)), options, digest).mapped
    for key in ("m6", "m7"):
        assert rows[key]["mapped"] is None and rows[key]["mapping_digest"] is None and "notes" not in rows[key]
    assert rows["m6"]["status"] == "rejected" and rows["m7"]["status"] == "pending"
    assert rows["m8"]["mapped"] == {"endpoint": "events/track", "body": {"eventName": "as recorded"}}


async def test_without_the_config_the_default_mapping_decides_and_a_large_ledger_is_done_in_chunks(
        ledger_url: str) -> None:
    engine = await at_0008(ledger_url)
    count = 1_234  # more than two chunks of 500
    try:
        await insert(engine, [{"key": f"m{n}", "user_key": f"u{n}", "payload": track(n)} for n in range(count)])
        await migrate.upgrade(engine)
        rows = await stored(engine)
    finally:
        await engine.dispose()
    default = Config()
    expected = outbound_row(validate(track(count - 1)), outbound_options(default), None).mapped
    assert expected is not None and expected["body"]["eventName"] == "Signed Up"
    assert rows[f"m{count - 1}"]["mapped"] == expected
    assert {r["mapping_digest"] for r in rows.values()} == {mapping_digest(default)}
    assert all(r["status"] == "pending" and r["mapped"] for r in rows.values())
    assert "under the default mapping" in rows["m0"]["notes"][0]


async def test_a_row_the_mapper_fails_on_is_dead_with_the_error_named_and_the_migration_completes(
        ledger_url: str, monkeypatch: Any) -> None:
    from sync.outbound import mapper

    def broken(event: dict[str, Any], options: Any, who: Any = None) -> Any:
        if event["messageId"] == "m1":
            raise ZeroDivisionError("a mapper bug quoting u1@example.com")
        return real(event, options, who)

    real = mapper.map_event
    monkeypatch.setattr(mapper, "map_event", broken)
    engine = await at_0008(ledger_url)
    try:
        await insert(engine, [{"key": "m1", "user_key": "u1", "payload": track(1)},
                              {"key": "m2", "user_key": "u2", "payload": track(2)}])
        await migrate.upgrade(engine)
        rows = await stored(engine)
    finally:
        await engine.dispose()
    assert (rows["m1"]["status"], rows["m1"]["reason"]) == ("dead", "cannot map the event: ZeroDivisionError")
    assert rows["m1"]["reason_class"] == "mapping"
    assert rows["m2"]["status"] == "pending" and rows["m2"]["mapped"]
