"""The ledger contract, run on the in-memory ledger, SQLite and PostgreSQL alike (the decisions are
``sync.ledger.decisions``); what is about one database by nature (its pragmas, an unreachable server) runs
on that one alone."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sync.errors import LedgerUnavailable
from sync.ledger.store import Ledger, create_engine
from sync.model import Claim, Direction, Downtime, Known, NewEvent, Remapped, Settlement, Status
from tests import ledgers
from tests.ledgers import AnyLedger, another_process
from tests.support import lapse_leases

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OUT, IN = Direction.OUTBOUND, Direction.INBOUND
ledger_url, ledger = ledgers.ledger_url, ledgers.ledger  # every ledger: memory, SQLite, PostgreSQL
def event(key: str, user: str | None = "u1", direction: Direction = OUT, kind: str = "track", **kw: Any
          ) -> NewEvent:
    return NewEvent(direction=direction, key=key, kind=kind, payload={"key": key, "n": [1, "x"]}, user_key=user,
                    **kw)


def claim(limit: int = 10, owner: str = "w1", direction: Direction = OUT, **kw: Any) -> Claim:
    return Claim(direction=direction, owner=owner, limit=limit, lease_seconds=30, **kw)


async def row_of(ledger: AnyLedger, key: str, direction: Direction = OUT) -> Any:
    found = await ledger.get(direction, key)
    assert found is not None, key
    return found


async def test_record_reports_duplicates_and_keeps_one_row(ledger: AnyLedger) -> None:
    assert await ledger.record([event("a"), event("b")], T0) == set()
    assert await ledger.record([event("b"), event("c"), event("c")], T0) == {"b"}
    stats = await ledger.stats()
    assert stats.counts[("outbound", "pending")] == 3


async def test_a_row_with_either_idempotency_key_already_recorded_is_a_duplicate(ledger: AnyLedger) -> None:
    """Revision 0010: an inbound webhook naming only the userId and the export record of the same event naming
    the email too have two keys but one Iterable message; the second is a duplicate, in a later batch or in the
    same one. Rows without a second key never collide on it."""
    assert await ledger.record([event("webhook", direction=IN, also="m:1"), event("x", direction=IN),
                                event("y", direction=IN)], T0) == set()
    assert await ledger.record([event("export", direction=IN, also="m:1")], T0) == {"export"}
    assert await ledger.record([event("a2", direction=IN, also="m:2"), event("b2", direction=IN, also="m:2")],
                               T0) == {"b2"}
    assert await ledger.record([event("other", direction=OUT, also="m:1")], T0) == set()  # per direction
    assert (await ledger.stats()).counts[("inbound", "pending")] == 4


async def test_keys_are_unique_per_direction_only(ledger: AnyLedger) -> None:
    await ledger.record([event("same", direction=OUT)], T0)
    assert await ledger.record([event("same", direction=IN)], T0) == set()
    assert (await ledger.get(IN, "same")) is not None


async def test_rows_keep_payload_and_aware_utc_times(ledger: AnyLedger) -> None:
    await ledger.record([event("a")], T0)
    row = await ledger.get(OUT, "a")
    assert row is not None
    assert row.payload == {"key": "a", "n": [1, "x"]}
    assert row.received_at == T0 and row.received_at.tzinfo is not None
    assert row.status is Status.PENDING and row.attempts == 0


async def test_skipped_and_rejected_rows_are_never_claimed(ledger: AnyLedger) -> None:
    await ledger.record([event("s", status=Status.SKIPPED, reason="group"),
                         event("r", status=Status.REJECTED, reason="bad"), event("p", user="u2")], T0)
    rows = await ledger.claim(claim(), T0)
    assert [r.key for r in rows] == ["p"]
    assert (await ledger.get(OUT, "s")).reason == "group"  # type: ignore[union-attr]


async def test_claim_leases_rows_until_the_lease_expires(ledger: AnyLedger, ledger_url: str) -> None:
    await ledger.record([event("a", user="u1"), event("b", user="u2")], T0)
    died = another_process(ledger, ledger_url)  # a process that claims, then dies
    first = await died.claim(claim(owner="w1"), T0)
    await died.close()
    assert [r.key for r in first] == ["a", "b"]
    assert await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=10)) == []
    await lapse_leases(ledger, 31)
    again = await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=31))
    assert [r.key for r in again] == ["a", "b"] and again[0].lease_owner == "w2"


async def test_claim_respects_limit_and_id_order(ledger: AnyLedger) -> None:
    await ledger.record([event(f"k{i}", user=f"u{i}") for i in range(5)], T0)
    rows = await ledger.claim(claim(limit=3), T0)
    assert [r.key for r in rows] == ["k0", "k1", "k2"]


async def test_a_user_waiting_to_retry_holds_back_their_later_rows(ledger: AnyLedger) -> None:
    await ledger.record([event("first", user="u1"), event("second", user="u1"), event("other", user="u2")], T0)
    rows = await ledger.claim(claim(limit=1), T0)
    assert [r.key for r in rows] == ["first"]
    await ledger.settle(Settlement(retry=((rows[0].id, T0 + timedelta(minutes=5), "HTTP 500"),)), T0, owner="w1")
    later = await ledger.claim(claim(), T0 + timedelta(seconds=1))
    assert [r.key for r in later] == ["other"]  # "second" waits behind "first"
    await ledger.release_owner("w1", T0)
    due = await ledger.claim(claim(owner="w2"), T0 + timedelta(minutes=6))
    assert [r.key for r in due] == ["first", "second", "other"]  # "other": given back


async def test_leased_earlier_row_blocks_later_rows_of_the_same_user(ledger: AnyLedger) -> None:
    await ledger.record([event("first", user="u1")], T0)
    await ledger.claim(claim(owner="w1"), T0)
    await ledger.record([event("second", user="u1")], T0)
    assert await ledger.claim(claim(owner="w2"), T0 + timedelta(seconds=1)) == []


async def test_settle_marks_delivered_retry_dead_and_released(ledger: AnyLedger) -> None:
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


async def test_settle_never_changes_a_terminal_row(ledger: AnyLedger) -> None:
    await ledger.record([event("a")], T0)
    (row,) = await ledger.claim(claim(), T0)
    await ledger.settle(Settlement(delivered=(row.id,)), T0, owner="w1")
    await ledger.settle(Settlement(dead=((row.id, "late failure"),)), T0, owner="w1")
    assert (await ledger.get(OUT, "a")).status is Status.DELIVERED  # type: ignore[union-attr]


async def test_release_owner_and_reap_expired(ledger: AnyLedger, ledger_url: str) -> None:
    await ledger.record([event("a", user="1"), event("b", user="2")], T0)
    await ledger.claim(claim(limit=1, owner="w1"), T0)
    died = another_process(ledger, ledger_url)
    await died.claim(claim(limit=1, owner="w2"), T0)
    await died.close()
    assert await ledger.release_owner("w1", T0) == 1
    assert await ledger.reap_expired(T0 + timedelta(seconds=5)) == 0
    await lapse_leases(ledger, 31)
    assert await ledger.reap_expired(T0 + timedelta(seconds=31)) == 1
    assert [r.key for r in await ledger.claim(claim(owner="w3"), T0 + timedelta(seconds=31))] == ["a", "b"]


async def test_stats_pauses_and_oldest_pending(ledger: AnyLedger) -> None:
    await ledger.record([event("a")], T0)
    await ledger.record([event("b", direction=IN)], T0 + timedelta(minutes=1))
    await ledger.pause(OUT, "HTTP 401 BadApiKey", T0)
    stats = await ledger.stats()
    assert stats.oldest_pending == {"outbound": T0, "inbound": T0 + timedelta(minutes=1)}
    assert stats.paused == {"outbound": "HTTP 401 BadApiKey"}
    await ledger.resume(OUT, T0)
    assert (await ledger.stats()).paused == {}


async def test_requeue_and_purge(ledger: AnyLedger) -> None:
    await ledger.record([event("a", user="1"), event("b", user="2")], T0)
    a, b = await ledger.claim(claim(), T0)
    await ledger.settle(Settlement(dead=((a.id, "bad"),), delivered=(b.id,)), T0, owner="w1")
    assert [r.key for r in await ledger.rows(status=Status.DEAD)] == ["a"]
    later = T0 + timedelta(days=1)
    assert await ledger.requeue(later, status=Status.DEAD) == 1
    assert [r.key for r in await ledger.claim(claim(), later)] == ["a"]
    assert await ledger.purge(T0 + timedelta(hours=1), chunk=1) == 1  # b, delivered at T0
    assert await ledger.get(OUT, "b") is None and await ledger.get(OUT, "a") is not None


async def test_concurrent_claims_never_overlap(ledger: AnyLedger) -> None:
    await ledger.record([event(f"k{i}", user=f"u{i}") for i in range(60)], T0)
    results = await asyncio.gather(*(ledger.claim(claim(limit=7, owner=f"w{i}"), T0) for i in range(6)))
    keys = [r.key for rows in results for r in rows]
    assert len(keys) == len(set(keys)) == 42


async def test_requeue_sends_only_dead_rows_again(ledger: AnyLedger) -> None:
    """One rule with ``ledger retry``: delivered, skipped, held and forgotten rows are not requeued."""
    await ledger.record([event("dead", user="1"), event("sent", user="2"), event("gone", user="u:zed"),
                         event("s", status=Status.SKIPPED, reason="group"),
                         event("h", status=Status.HELD, user="anon:v")], T0)
    dead, sent, gone = await ledger.claim(claim(), T0)
    await ledger.settle(Settlement(dead=((dead.id, "bad"), (gone.id, "bad")), delivered=(sent.id,)), T0, owner="w1")
    await ledger.forget("u:zed", T0)
    later = T0 + timedelta(hours=1)
    everything = [r.id for r in await ledger.rows(limit=100)]
    assert await ledger.requeue(later, ids=everything) == 1
    assert {r.key: r.status for r in await ledger.rows(limit=100)} == {
        "dead": Status.PENDING, "sent": Status.DELIVERED, "gone": Status.DEAD, "s": Status.SKIPPED, "h": Status.HELD}
    again = await row_of(ledger, "dead")
    assert again.retry_from == later and again.received_at == T0 and again.reason is None


async def test_a_recorded_row_releases_only_the_held_rows_it_replaces(ledger: AnyLedger) -> None:
    await ledger.record([event("h1", status=Status.HELD, user="anon:v"), event("p1", user="anon:v")], T0)
    await ledger.record([event("h1:released", user="u1", replaces=("h1", "p1", "missing"))], T0)
    held = await row_of(ledger, "h1")
    assert held.status is Status.SKIPPED and held.reason == "released as h1:released"
    assert (await row_of(ledger, "p1")).status is Status.PENDING  # not held: untouched
    assert await ledger.record([event("h1:released", replaces=("h1",))], T0) == {"h1:released"}


async def test_a_merge_moves_pending_rows_and_leaves_sent_ones(ledger: AnyLedger) -> None:
    await ledger.record([event("e-first", user=None, identities=("e:ann@example.com",))], T0)
    await ledger.record([event("u-sent", user=None, identities=("u:ann",)),
                         event("u-waiting", user=None, identities=("u:ann",))], T0)
    (first,) = await ledger.claim(claim(limit=1), T0)
    (u_sent,) = await ledger.claim(claim(limit=1, owner="w2"), T0)
    assert (first.key, u_sent.key) == ("e-first", "u-sent")
    await ledger.settle(Settlement(delivered=(first.id,)), T0, owner="w1")
    await ledger.settle(Settlement(delivered=(u_sent.id,)), T0, owner="w2")
    await ledger.record([event("alias", user=None, identities=("u:ann", "e:ann@example.com"))], T0)
    keys = {k: (await row_of(ledger, k)).user_key for k in ("e-first", "u-sent", "u-waiting", "alias")}
    assert keys == {"e-first": "e:ann@example.com", "u-sent": "u:ann", "u-waiting": "e:ann@example.com",
                    "alias": "e:ann@example.com"}  # the smaller key survives; sent rows keep theirs


async def test_a_delivered_deletion_becomes_a_tombstone(ledger: AnyLedger) -> None:
    await ledger.record([event("t", user=None, identities=("u:bo",))], T0)
    await ledger.record([event("del", user=None, identities=("u:bo",), kind="delete", forgets=True)], T0)
    assert (await row_of(ledger, "t")).payload.get("forgotten") is True
    (deletion,) = await ledger.claim(claim(), T0)
    assert deletion.key == "del" and deletion.mapped and deletion.mapped.get("forget_hash")
    assert await ledger.deletions_pending() == 1
    await ledger.settle(Settlement(delivered=(deletion.id,), forgotten=(deletion.id,)), T0, owner="w1")
    row = await row_of(ledger, "del")
    assert row.status is Status.DELIVERED and row.payload == {"forgotten": True,
                                                               "identifiers_sha256": deletion.mapped["forget_hash"]}
    assert row.mapped is None and row.user_key.startswith("forgotten:") and await ledger.deletions_pending() == 0


async def test_a_lease_run_out_fails_its_holders_recheck_where_replicas_share_the_ledger(
        ledger: AnyLedger, ledger_url: str) -> None:
    """A bug hunt: after a ledger outage longer than the lease, a replica's rows claimed ahead passed its
    re-check (pending, its name on the lease) though the lease had run out and another replica could hold them
    now: two replicas sent the same rows within 0.2 s. On PostgreSQL the re-check judges the lease by the
    database's clock; on SQLite and in memory (one process) a live owner's lease does not run out."""
    await ledger.record([event("a")], T0)
    [a] = await ledger.claim(claim(), T0)
    await lapse_leases(ledger, 31)  # the claim's lease is 30 s
    mine = (await ledger.recheck("w1", [a.id]))[a.id][1]
    assert mine is (not ledger_url.startswith("postgresql"))


async def test_a_deletion_forgets_what_came_before_it_in_its_batch_not_what_follows(ledger: AnyLedger) -> None:
    """A review with real batches: identify, delete, identify again for one userId in one batch left the second
    identify skipped as "user deleted" (the deletion ran after the whole batch was inserted); sent as separate
    requests the later identify was a new person, as SPEC section 11 says."""
    who = ("u:u9",)
    await ledger.record([event("before", user=None, identities=who),
                         event("del", user=None, identities=who, kind="delete", forgets=True),
                         event("after", user=None, identities=who)], T0)
    before, deletion, after = [await row_of(ledger, key) for key in ("before", "del", "after")]
    assert before.status is Status.SKIPPED and deletion.status is Status.PENDING
    assert after.status is Status.PENDING and after.payload == {"key": "after", "n": [1, "x"]}
    assert after.user_key == "u:u9"


async def test_a_push_token_registered_again_after_a_forget_is_a_new_registration(ledger: AnyLedger) -> None:
    """A review of deletions: a token row's key names the person and the token (one registration per person),
    not an event; after the person was deleted (Iterable deletes their devices too) the same registration was
    taken for a duplicate and the re-created user never got the device back."""
    who = ("u:u1",)
    token = event("token:abc", user=None, identities=who, kind="device token")
    assert await ledger.record([token], T0) == set()
    await ledger.forget("u:u1", T0)
    assert await ledger.record([event("token:abc", user=None, identities=who, kind="device token")], T0) == set()
    again = await row_of(ledger, "token:abc")
    assert again.status is Status.PENDING and again.user_key == "u:u1"
    assert await ledger.record([event("token:abc", user=None, identities=who, kind="device token")], T0) == {
        "token:abc"}  # and once recorded, a duplicate as before


async def test_a_row_skipped_since_its_claim_is_no_longer_the_owners(ledger: AnyLedger) -> None:
    await ledger.record([event("a", user=None, identities=("u:cy",)), event("b", user="u2")], T0)
    a, b = await ledger.claim(claim(), T0)
    await ledger.forget("u:cy", T0)
    checked = await ledger.recheck("w1", [a.id, b.id, 999])
    assert set(checked) == {a.id, b.id} and checked[b.id] == ("u2", True)
    assert checked[a.id][1] is False and str(checked[a.id][0]).startswith("forgotten:")
    until = T0 + timedelta(seconds=60)
    assert await ledger.renew("w1", [a.id, b.id], until) == 1
    assert await ledger.renew("w2", [b.id], until) == 0
    await ledger.settle(Settlement(delivered=(a.id, b.id)), T0, owner="w1")
    assert (await row_of(ledger, "a")).status is Status.SKIPPED and (await row_of(ledger, "b")).attempts == 1
    assert await ledger.release_owner("w1", T0) == 0


async def test_rows_in_flight_do_not_hold_back_the_persons_later_rows(ledger: AnyLedger) -> None:
    await ledger.record([event("first"), event("second"), event("third")], T0)
    (first,) = await ledger.claim(claim(limit=1), T0)
    assert await ledger.claim(claim(), T0) == []  # "first" is leased: the person waits
    later = await ledger.claim(claim(in_flight=frozenset({first.id})), T0)
    assert [r.key for r in later] == ["second", "third"]


async def test_record_decides_rows_from_what_the_ledger_knows_of_their_people(ledger: AnyLedger) -> None:
    class Joins:
        emails = False  # (email projects' deciders also ask for each person's last email)

        def asked(self, rows: Sequence[NewEvent]) -> list[str]:
            return [i for r in rows if r.direction is IN for i in r.identities]

        def __call__(self, rows: Sequence[NewEvent], found: Mapping[str, Known]) -> list[NewEvent]:
            return [NewEvent(direction=r.direction, key=r.key, kind=r.kind, identities=r.identities,
                             payload={**r.payload, "userId": found[r.identities[0]].user_id})
                    if r.identities and r.identities[0] in found else r for r in rows]

    await ledger.record([event("o", user=None, identities=("u:dee", "e:dee@example.com"))], T0)
    await ledger.record([event("i", user=None, direction=IN, identities=("e:dee@example.com",))], T0,
                        decide=Joins())
    row = await row_of(ledger, "i", IN)
    assert row.payload["userId"] == "dee" and row.user_key == "u:dee"  # the first identifier seen is the key


async def test_held_rows_counted_and_expired(ledger: AnyLedger) -> None:
    await ledger.record([event("h1", status=Status.HELD, user="anon:a"), event("h2", status=Status.HELD, user="anon:a"),
                         event("h3", status=Status.HELD, user="anon:b")], T0)
    await ledger.record([event("h4", status=Status.HELD, user="anon:b")], T0 + timedelta(hours=2))
    assert [r.key for r in await ledger.held(["anon:a"])] == ["h1", "h2"]
    assert await ledger.held_counts(["anon:a", "anon:c"]) == ({"anon:a": 2}, 4)
    assert (await ledger.pending()).held == {"outbound": 4}
    assert await ledger.expire_held(T0 + timedelta(hours=1), T0 + timedelta(hours=3)) == 3
    expired = await row_of(ledger, "h3")
    assert expired.status is Status.SKIPPED and expired.reason == "anonymous, never identified"
    assert [r.key for r in await ledger.held(["anon:a", "anon:b"])] == ["h4"]


async def test_remap_changes_only_unclaimed_rows_still_as_read(ledger: AnyLedger) -> None:
    await ledger.record([event("r", status=Status.REJECTED, reason="bad", user="1"), event("p", user="2"),
                         event("s", status=Status.SKIPPED, reason="group", user="3")], T0)
    (p,) = await ledger.claim(claim(), T0)
    r, s = await row_of(ledger, "r"), await row_of(ledger, "s")
    call = {"endpoint": "/api/events/track", "body": {}}

    def change(row_id: int, was: Status) -> Remapped:
        return Remapped(id=row_id, was=was, status=Status.PENDING, mapped=call, mapping_digest="d2", reason=None)

    later = T0 + timedelta(seconds=10)  # "p" is still leased
    assert await ledger.remap([change(r.id, Status.REJECTED), change(p.id, Status.PENDING),
                               change(s.id, Status.REJECTED)], later) == 1
    again = await row_of(ledger, "r")
    assert again.status is Status.PENDING and again.mapped == call and again.mapping_digest == "d2"
    assert again.retry_from == later and again.reason is None
    assert (await row_of(ledger, "s")).status is Status.SKIPPED and (await row_of(ledger, "p")).lease_owner == "w1"


async def test_rows_pages_in_id_order(ledger: AnyLedger) -> None:
    await ledger.record([event(f"k{i}", user=f"u{i}", direction=OUT if i % 2 else IN) for i in range(6)], T0)
    first = await ledger.rows(status=Status.PENDING, limit=2)
    assert [r.key for r in first] == ["k0", "k1"]
    assert [r.key for r in await ledger.rows(status=Status.PENDING, limit=2, after_id=first[-1].id)] == ["k2", "k3"]
    assert [r.key for r in await ledger.rows(direction=OUT, limit=10)] == ["k1", "k3", "k5"]
    assert [r.key for r in await ledger.rows(ids=[first[1].id], limit=10)] == ["k1"]
    assert await ledger.rows(status=Status.DEAD) == []
    pending = await ledger.pending()
    assert pending.counts == {"outbound": 3, "inbound": 3} and pending.oldest == {"outbound": T0, "inbound": T0}


async def test_downtime_spans_and_an_operators_pause(ledger: AnyLedger) -> None:
    await ledger.pause(OUT, "maintenance", T0, kind="manual")
    await ledger.pause(OUT, "again", T0, kind="manual")  # one open span of a kind
    assert await ledger.held_by_operator(OUT) == "maintenance" and await ledger.held_by_operator(IN) is None
    await ledger.add_downtime(Downtime(direction=IN, kind="ledger", reason="down", started_at=T0,
                                       ended_at=T0 + timedelta(minutes=5)))
    assert [s.reason for s in await ledger.downtime(IN, T0)] == ["down"]
    assert await ledger.downtime(IN, T0 + timedelta(minutes=5)) == []
    assert (await ledger.stats()).paused == {"outbound": "maintenance"}
    assert await ledger.resume(OUT, T0, kind="manual") == 1 and await ledger.held_by_operator(OUT) is None


async def test_cursors_keep_their_last_position(ledger: AnyLedger) -> None:
    assert await ledger.cursor("export") is None
    await ledger.set_cursor("export", "2026-01-01", T0)
    await ledger.set_cursor("export", "2026-01-02", T0)
    assert await ledger.cursor("export") == "2026-01-02"


async def test_processes_writing_one_cursor_at_once_all_succeed(ledger: AnyLedger, ledger_url: str) -> None:
    """Replicas starting together each write the mapping's digest: a delete then an insert let two insert at
    once, and the duplicate key killed one of them at startup."""
    others = [another_process(ledger, ledger_url) for _ in range(3)]
    try:
        for round_ in range(10):
            await asyncio.gather(*(other.set_cursor(f"digest-{round_}", f"{n}", T0) for n, other in enumerate(others)))
            assert await ledger.cursor(f"digest-{round_}") in {"0", "1", "2"}
    finally:
        for other in others:
            if other is not ledger:
                await other.close()


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
