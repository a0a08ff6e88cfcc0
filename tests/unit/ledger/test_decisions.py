"""The ledger's decisions (``sync.ledger.decisions``) as tables: leases and settlement, recording, requeue
and purge, and what a forget turns into tombstones. Every ledger applies these; the contract suite checks the
ledgers apply them alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.ledger import decisions
from sync.ledger.decisions import Stored
from sync.model import Direction, NewEvent, Remapped, Settlement, Status

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
OUT, IN = Direction.OUTBOUND, Direction.INBOUND


def stored(key: str = "k", status: Status = Status.PENDING, user_key: str | None = "u:ann", row_id: int = 1,
           direction: Direction = OUT, **kw: Any) -> Stored:
    return Stored(id=row_id, direction=direction, key=key, status=status, reason=kw.pop("reason", None),
                  payload=kw.pop("payload", {"userId": "ann"}), mapped=kw.pop("mapped", None), user_key=user_key)


# -- leases and settlement ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "lease_owner", "mine"), [
    (Status.PENDING, "w1", True),
    (Status.PENDING, "w2", False),  # reaped and claimed by another
    (Status.PENDING, None, False),  # released or reaped
    (Status.SKIPPED, "w1", False),  # forgotten or decided again since the claim
    (Status.DELIVERED, "w1", False),
    (Status.HELD, "w1", False),
])
def test_only_a_pending_row_still_leased_to_the_owner_is_theirs(status: Status, lease_owner: str | None,
                                                                  mine: bool) -> None:
    assert decisions.held_by(status, lease_owner, "w1") is mine


@pytest.mark.parametrize(("status", "next_attempt_at", "lease_expires_at", "due"), [
    (Status.PENDING, T0, None, True),
    (Status.PENDING, LATER, None, False),  # waiting to retry
    (Status.PENDING, T0, LATER, False),  # leased
    (Status.PENDING, T0, T0, True),  # the lease ended at this instant
    (Status.DEAD, T0, None, False),
    (Status.HELD, T0, None, False),
])
def test_a_claim_takes_pending_rows_that_are_due_and_not_leased(status: Status, next_attempt_at: datetime,
                                                                lease_expires_at: datetime | None, due: bool) -> None:
    assert decisions.due(status, next_attempt_at, lease_expires_at, T0) is due


def test_a_settlement_frees_each_row_and_counts_a_try_except_for_a_release() -> None:
    changes = decisions.settled(Settlement(delivered=(1,), retry=((2, LATER, "HTTP 503 " + "x" * 3000),),
                                           dead=((3, "bad"),), released=(4,)), T0)
    by_id = {row_id: (values, tried) for row_id, values, tried in changes}
    assert {row_id: tried for row_id, (_, tried) in by_id.items()} == {1: True, 2: True, 3: True, 4: False}
    assert all(values["lease_owner"] is None and values["lease_expires_at"] is None for values, _ in by_id.values())
    assert by_id[1][0]["status"] is Status.DELIVERED and by_id[1][0]["last_error"] is None
    assert "status" not in by_id[2][0] and by_id[2][0]["next_attempt_at"] == LATER
    assert len(by_id[2][0]["last_error"]) == decisions.TEXT_CHARS
    assert by_id[3][0]["status"] is Status.DEAD and by_id[3][0]["reason"] == "bad"
    assert by_id[4][0] == decisions.released(T0) and by_id[4][0]["next_attempt_at"] == T0


def test_a_reaped_row_keeps_its_due_time() -> None:
    assert decisions.reaped() == {"lease_owner": None, "lease_expires_at": None}


@pytest.mark.parametrize(("status", "tombstone"), [(Status.DELIVERED, True), (Status.PENDING, False),
                                                   (Status.DEAD, False)])
def test_only_a_delivered_deletion_becomes_a_tombstone(status: Status, tombstone: bool) -> None:
    values = decisions.deletion_forgotten(status, {"forget_hash": "ab" * 32, "body": {"email": "a@b.c"}})
    if not tombstone:
        assert values is None
        return
    assert values == {"payload": {"forgotten": True, "identifiers_sha256": "ab" * 32}, "mapped": None,
                      "user_key": "forgotten:" + "ab" * 16}


# -- recording ----------------------------------------------------------------------------------------------------

def new(key: str, direction: Direction = OUT, **kw: Any) -> NewEvent:
    return NewEvent(direction=direction, key=key, kind="track", payload=kw.pop("payload", {}), **kw)


def test_the_first_copy_of_a_key_wins_per_direction() -> None:
    first = new("a", payload={"n": 1})
    kept = decisions.first_copies([first, new("a", payload={"n": 2}), new("a", IN), new("b")])
    assert [(e.direction, e.key) for e in kept] == [(OUT, "a"), (IN, "a"), (OUT, "b")] and kept[0] is first


def test_a_released_hold_is_skipped_naming_the_row_that_released_it() -> None:
    assert decisions.release_of(new("h1:released", replaces=("h1",)), T0) == {
        "status": Status.SKIPPED, "reason": "released as h1:released", "updated_at": T0}
    assert decisions.HOLD is Status.HELD


@pytest.mark.parametrize(("status", "user_key", "moved"), [
    (Status.PENDING, "u:old", "e:new"),
    (Status.PENDING, "u:other", None),
    (Status.PENDING, None, None),
    (Status.DELIVERED, "u:old", None),  # what was sent keeps the key it was sent under
    (Status.DEAD, "u:old", None),
])
def test_a_merge_moves_only_the_merged_persons_pending_rows(status: Status, user_key: str | None,
                                                            moved: str | None) -> None:
    assert decisions.merged(status, user_key, {"u:old": "e:new"}) == moved


def test_the_last_consent_of_a_batch_wins_and_a_deletion_stores_none() -> None:
    rows = decisions.consent_rows([new("1", identities=("u:a", "e:a@x.io"), consent={"Ads": True}),
                                   new("2", identities=("u:a",), consent={"Ads": False}),
                                   new("3", identities=("u:a",)),
                                   new("4", identities=("u:b",), consent={"Ads": True}, forgets=True)], T0)
    assert {r["identifier"]: r["categories"] for r in rows} == {"u:a": {"Ads": False}, "e:a@x.io": {"Ads": True}}


# -- reading and operating ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "user_key", "accepted"), [
    (Status.DEAD, "u:ann", True),
    (Status.DEAD, None, True),
    (Status.DEAD, "forgotten:0123", False),  # would send a tombstone upstream
    (Status.REJECTED, "u:ann", False),  # decided again instead (``--remap``)
    (Status.SKIPPED, "u:ann", False),
    (Status.DELIVERED, "u:ann", False),
    (Status.HELD, "anon:v", False),
    (Status.PENDING, "u:ann", False),
])
def test_requeue_sends_only_dead_rows_of_people_not_forgotten(status: Status, user_key: str | None,
                                                              accepted: bool) -> None:
    assert decisions.requeueable(status, user_key) is accepted


def test_a_requeued_row_is_due_now_with_a_fresh_window() -> None:
    assert decisions.requeued(LATER) == {"status": Status.PENDING, "next_attempt_at": LATER, "retry_from": LATER,
                                         "reason": None, "updated_at": LATER, "lease_owner": None,
                                         "lease_expires_at": None}


def test_a_row_decided_again_takes_its_new_call_and_a_fresh_window() -> None:
    change = Remapped(id=1, was=Status.REJECTED, status=Status.PENDING, mapped={"endpoint": "/x"},
                      mapping_digest="d2", reason=None)
    values = decisions.redecided(change, LATER)
    assert values["status"] is Status.PENDING and values["mapped"] == {"endpoint": "/x"}
    assert values["retry_from"] == values["next_attempt_at"] == LATER and values["lease_owner"] is None


@pytest.mark.parametrize(("status", "updated_at", "gone"), [
    (Status.DELIVERED, T0, True), (Status.DEAD, T0, True), (Status.SKIPPED, T0, True), (Status.REJECTED, T0, True),
    (Status.DELIVERED, LATER, False),  # not old enough
    (Status.PENDING, T0, False), (Status.HELD, T0, False),
])
def test_purge_deletes_old_terminal_rows_only(status: Status, updated_at: datetime, gone: bool) -> None:
    assert decisions.purgeable(status, updated_at, T0 + timedelta(minutes=1)) is gone


# -- forgetting ---------------------------------------------------------------------------------------------------

IDENTS = ["u:ann", "e:ann@example.com"]
DIGEST = decisions.identity_hash(IDENTS)


def test_the_identity_hash_ignores_order_and_repeats() -> None:
    assert decisions.identity_hash(["e:ann@example.com", "u:ann", "u:ann"]) == DIGEST


@pytest.mark.parametrize(("status", "after", "reason"), [
    (Status.PENDING, Status.SKIPPED, "user deleted"),
    (Status.HELD, Status.SKIPPED, "user deleted"),
    (Status.DEAD, None, "HTTP 400 [forgotten] unknown"),  # keeps its status; the reason loses the identifier
    (Status.DELIVERED, None, "HTTP 400 [forgotten] unknown"),
])
def test_a_forgotten_row_becomes_a_tombstone(status: Status, after: Status | None, reason: str) -> None:
    row = stored(status=status, reason="HTTP 400 ANN@example.com unknown", mapped={"body": {"email": "ann"}})
    values = decisions.forgetting(row, IDENTS, DIGEST, T0, keep=None, why="user deleted")
    assert values.get("status") is after and values["reason"] == reason
    assert values["payload"] == decisions.tombstone(DIGEST) and values["mapped"] is None
    assert values["user_key"] == decisions.forgotten_key(DIGEST) and values["lease_owner"] is None


def test_the_deletion_still_to_send_only_learns_its_hash() -> None:
    row = stored(key="del", mapped={"endpoint": "/api/users/delete"})
    values = decisions.forgetting(row, IDENTS, DIGEST, T0, keep=(OUT, "del"), why="user deleted")
    assert values == {"mapped": {"endpoint": "/api/users/delete", "forget_hash": DIGEST}}
    assert decisions.erased([values, decisions.erase(stored(), IDENTS, DIGEST, T0, "x")]) == 1


def test_a_forget_reaches_the_held_originals_and_the_visitors_holds() -> None:
    mine = [stored(key="m1:released", payload={"anonymousId": " v-1 "}), stored(key="m2", payload={"anonymousId": 7}),
            stored(key="i1:released", direction=IN, payload={"anonymousId": True})]
    wanted, holds = decisions.originals(mine), decisions.visitors(mine)
    assert wanted == {"m1"} and holds == {"anon:v-1", "anon:7"}
    cases = {
        "the original of a released row": (stored(key="m1", status=Status.SKIPPED, user_key="anon:v-1"), True),
        "a later row still held": (stored(key="h", status=Status.HELD, user_key="anon:7"), True),
        "a row of that visit already sent": (stored(key="s", status=Status.DELIVERED, user_key="anon:7"), False),
        "somebody else's hold": (stored(key="x", status=Status.HELD, user_key="anon:other"), False),
        "not a hold key": (stored(key="m1", status=Status.HELD, user_key="u:m1"), False),
    }
    assert {name: decisions.anonymous_of(row, wanted, holds) for name, (row, _) in cases.items()} == \
        {name: expected for name, (_, expected) in cases.items()}


def test_lookups_find_links_stored_before_identifiers_were_normalised() -> None:
    assert decisions.lookups("u:ann") == ["u:ann"]
    assert "e:zoë@example.com" in decisions.lookups("e:zoe\u0308@example.com")


@pytest.mark.parametrize("identifiers", [IDENTS, IDENTS[::-1]])
def test_a_scrub_takes_an_email_out_whole_when_the_user_id_is_part_of_it(identifiers: list[str]) -> None:
    assert decisions.scrub("no user ann@example.com (ANN)", identifiers) == "no user [forgotten] ([forgotten])"
