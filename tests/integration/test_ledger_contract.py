"""The ledger contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync.errors import LedgerUnavailable
from sync.ledger.store import Ledger, create_engine
from sync.model import Claim, Direction, NewEvent, Settlement, Status
from tests.support import lapse_leases

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OUT, IN = Direction.OUTBOUND, Direction.INBOUND


def event(key: str, user: str | None = "u1", direction: Direction = OUT, **kw: object) -> NewEvent:
    return NewEvent(direction=direction, key=key, kind="track", payload={"key": key, "n": [1, "x"]},
                    user_key=user, **kw)  # type: ignore[arg-type]


def claim(limit: int = 10, owner: str = "w1", direction: Direction = OUT) -> Claim:
    return Claim(direction=direction, owner=owner, limit=limit, lease_seconds=30)


async def test_record_reports_duplicates_and_keeps_one_row(ledger: Ledger) -> None:
    assert await ledger.record([event("a"), event("b")], T0) == set()
    assert await ledger.record([event("b"), event("c"), event("c")], T0) == {"b"}
    stats = await ledger.stats()
    assert stats.counts[("outbound", "pending")] == 3


async def test_keys_are_unique_per_direction_only(ledger: Ledger) -> None:
    await ledger.record([event("same", direction=OUT)], T0)
    assert await ledger.record([event("same", direction=IN)], T0) == set()
    assert (await ledger.get(IN, "same")) is not None


async def test_rows_keep_payload_and_aware_utc_times(ledger: Ledger) -> None:
    await ledger.record([event("a")], T0)
    row = await ledger.get(OUT, "a")
    assert row is not None
    assert row.payload == {"key": "a", "n": [1, "x"]}
    assert row.received_at == T0 and row.received_at.tzinfo is not None
    assert row.status is Status.PENDING and row.attempts == 0


async def test_skipped_and_rejected_rows_are_never_claimed(ledger: Ledger) -> None:
    await ledger.record([event("s", status=Status.SKIPPED, reason="group"),
                         event("r", status=Status.REJECTED, reason="bad"), event("p", user="u2")], T0)
    rows = await ledger.claim(claim(), T0)
    assert [r.key for r in rows] == ["p"]
    assert (await ledger.get(OUT, "s")).reason == "group"  # type: ignore[union-attr]


async def test_claim_leases_rows_until_the_lease_expires(ledger: Ledger, ledger_url: str) -> None:
    await ledger.record([event("a", user="u1"), event("b", user="u2")], T0)
    died = Ledger(create_engine(ledger_url))  # a process that claims, then dies
    first = await died.claim(claim(owner="w1"), T0)
    await died.close()
    assert [r.key for r in first] == ["a", "b"]
    assert await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=10)) == []
    await lapse_leases(ledger, 31)
    again = await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=31))
    assert [r.key for r in again] == ["a", "b"] and again[0].lease_owner == "w2"


async def test_claim_respects_limit_and_id_order(ledger: Ledger) -> None:
    await ledger.record([event(f"k{i}", user=f"u{i}") for i in range(5)], T0)
    rows = await ledger.claim(claim(limit=3), T0)
    assert [r.key for r in rows] == ["k0", "k1", "k2"]


async def test_a_user_waiting_to_retry_holds_back_their_later_rows(ledger: Ledger) -> None:
    await ledger.record([event("first", user="u1"), event("second", user="u1"), event("other", user="u2")], T0)
    rows = await ledger.claim(claim(limit=1), T0)
    assert [r.key for r in rows] == ["first"]
    await ledger.settle(Settlement(retry=((rows[0].id, T0 + timedelta(minutes=5), "HTTP 500"),)), T0, owner="w1")
    later = await ledger.claim(claim(), T0 + timedelta(seconds=1))
    assert [r.key for r in later] == ["other"]  # "second" waits behind "first"
    await ledger.release_owner("w1", T0)
    due = await ledger.claim(claim(owner="w2"), T0 + timedelta(minutes=6))
    assert [r.key for r in due] == ["first", "second", "other"]  # "other": given back


async def test_leased_earlier_row_blocks_later_rows_of_the_same_user(ledger: Ledger) -> None:
    await ledger.record([event("first", user="u1")], T0)
    await ledger.claim(claim(owner="w1"), T0)
    await ledger.record([event("second", user="u1")], T0)
    assert await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=1)) == []


async def test_settle_marks_delivered_retry_dead_and_released(ledger: Ledger) -> None:
    await ledger.record([event(k, user=k) for k in "abcd"], T0)
    a, b, c, d = await ledger.claim(claim(), T0)
    later = T0 + timedelta(minutes=1)
    await ledger.settle(Settlement(delivered=(a.id,), retry=((b.id, later, "HTTP 503"),), dead=((c.id, "bad"),),
                                   released=(d.id,)), T0, owner="w1")
    rows = {k: await ledger.get(OUT, k) for k in "abcd"}
    assert rows["a"].status is Status.DELIVERED and rows["a"].attempts == 1  # type: ignore[union-attr]
    assert rows["b"].status is Status.PENDING and rows["b"].next_attempt_at == later  # type: ignore[union-attr]
    assert rows["b"].last_error == "HTTP 503" and rows["b"].attempts == 1  # type: ignore[union-attr]
    assert rows["c"].status is Status.DEAD and rows["c"].reason == "bad"  # type: ignore[union-attr]
    assert rows["d"].attempts == 0 and rows["d"].lease_owner is None  # type: ignore[union-attr]
    assert [r.key for r in await ledger.claim(claim(), T0)] == ["d"]


async def test_settle_never_changes_a_terminal_row(ledger: Ledger) -> None:
    await ledger.record([event("a")], T0)
    (row,) = await ledger.claim(claim(), T0)
    await ledger.settle(Settlement(delivered=(row.id,)), T0, owner="w1")
    await ledger.settle(Settlement(dead=((row.id, "late failure"),)), T0, owner="w1")
    assert (await ledger.get(OUT, "a")).status is Status.DELIVERED  # type: ignore[union-attr]


async def test_release_owner_and_reap_expired(ledger: Ledger, ledger_url: str) -> None:
    await ledger.record([event("a", user="1"), event("b", user="2")], T0)
    await ledger.claim(claim(limit=1, owner="w1"), T0)
    died = Ledger(create_engine(ledger_url))
    await died.claim(claim(limit=1, owner="w2"), T0)
    await died.close()
    assert await ledger.release_owner("w1", T0) == 1
    assert await ledger.reap_expired(T0 + timedelta(seconds=5)) == 0
    await lapse_leases(ledger, 31)
    assert await ledger.reap_expired(T0 + timedelta(seconds=31)) == 1
    assert [r.key for r in await ledger.claim(claim(owner="w3"), T0 + timedelta(seconds=31))] == ["a", "b"]


async def test_stats_pauses_and_oldest_pending(ledger: Ledger) -> None:
    await ledger.record([event("a")], T0)
    await ledger.record([event("b", direction=IN)], T0 + timedelta(minutes=1))
    await ledger.pause(OUT, "HTTP 401 BadApiKey", T0)
    stats = await ledger.stats()
    assert stats.oldest_pending == {"outbound": T0, "inbound": T0 + timedelta(minutes=1)}
    assert stats.paused == {"outbound": "HTTP 401 BadApiKey"}
    await ledger.resume(OUT, T0)
    assert (await ledger.stats()).paused == {}


async def test_requeue_and_purge(ledger: Ledger) -> None:
    await ledger.record([event("a", user="1"), event("b", user="2")], T0)
    a, b = await ledger.claim(claim(), T0)
    await ledger.settle(Settlement(dead=((a.id, "bad"),), delivered=(b.id,)), T0, owner="w1")
    assert [r.key for r in await ledger.rows(status=Status.DEAD)] == ["a"]
    later = T0 + timedelta(days=1)
    assert await ledger.requeue(later, status=Status.DEAD) == 1
    assert [r.key for r in await ledger.claim(claim(), later)] == ["a"]
    assert await ledger.purge(T0 + timedelta(hours=1), chunk=1) == 1  # b, delivered at T0
    assert await ledger.get(OUT, "b") is None and await ledger.get(OUT, "a") is not None


async def test_concurrent_claims_never_overlap(ledger: Ledger) -> None:
    await ledger.record([event(f"k{i}", user=f"u{i}") for i in range(60)], T0)
    results = await asyncio.gather(*(ledger.claim(claim(limit=7, owner=f"w{i}"), T0) for i in range(6)))
    keys = [r.key for rows in results for r in rows]
    assert len(keys) == len(set(keys)) == 42


async def test_unreachable_database_is_ledger_unavailable() -> None:
    ledger = Ledger(create_engine("postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(LedgerUnavailable):
        await ledger.record([event("a")], T0)
    await ledger.close()


async def test_sqlite_runs_wal_with_full_sync(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/l.db")
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(sa.text("PRAGMA synchronous"))).scalar() == 2  # FULL
    await engine.dispose()
