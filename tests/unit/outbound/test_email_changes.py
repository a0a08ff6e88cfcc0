"""Email changes in email projects (SPEC section 5): an identify that gives a known userId another email is
preceded by ``users/updateEmail`` from the email last sent for that userId, in the person's order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sync.engine.intake import Intake, outbound_rows
from sync.iterable.bulk import plan, waves
from sync.ledger.memory import MemoryLedger
from sync.metrics import Metrics
from sync.model import Known, NewEvent, Status, last_email
from sync.outbound import email_changes
from sync.outbound.mapper import IterableCall, Options

EMAIL = Options(project_type="email")
NOW = datetime(2026, 3, 4, tzinfo=UTC)


def identify(message_id: str, email: str, user_id: str = "e1", **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "messageId": message_id, "userId": user_id, "traits": {"email": email, **traits}}


def rows(*events: dict[str, Any], options: Options = EMAIL) -> list[NewEvent]:
    found, rejected = outbound_rows(list(events), options)
    assert not rejected
    return found


def test_a_new_email_for_a_known_user_id_is_changed_before_the_identify() -> None:
    new = rows(identify("m-2", "e1-new@example.com"))
    assert email_changes.asked(new) == ["u:e1"]
    decided = email_changes.with_changes(new, {"u:e1": "e1@example.com"})
    change, update = decided
    assert update is new[0]
    assert change.kind == "email change" and change.key == "m-2:email" and change.status is Status.PENDING
    assert change.mapped == {"endpoint": "users/updateEmail",
                             "body": {"currentEmail": "e1@example.com", "newEmail": "e1-new@example.com"}}
    # the same person: ordered by the identify's first identifier, the old email joined to it
    assert change.identities == ("u:e1", "e:e1-new@example.com", "e:e1@example.com")
    assert change.identities[0] == update.identities[0]


def test_no_change_without_a_known_email_or_with_the_same_one() -> None:
    new = rows(identify("m-1", "e1@example.com"))
    assert email_changes.with_changes(new, {}) == new  # the first email a userId is seen with
    assert email_changes.with_changes(new, {"u:e1": "e1@example.com"}) == new


def test_a_change_of_letter_case_alone_is_no_email_change() -> None:
    """Iterable treats an email's case as the same address (it lower-cases emails): no updateEmail."""
    new = rows(identify("m-2", " E1@Example.COM "))
    assert email_changes.with_changes(new, {"u:e1": "e1@example.com"}) == new


def test_identifies_of_one_batch_are_read_in_order() -> None:
    new = rows(identify("m-1", "a@example.com"), identify("m-2", "b@example.com"), identify("m-3", "b@example.com"))
    decided = email_changes.with_changes(new, {})
    assert [r.key for r in decided] == ["m-1", "m-2:email", "m-2", "m-3"]
    assert decided[1].mapped is not None
    assert decided[1].mapped["body"] == {"currentEmail": "a@example.com", "newEmail": "b@example.com"}


def test_only_email_projects_identifies_ask() -> None:
    """userId and hybrid projects change an email through dataFields.email on users/update (unchanged)."""
    for project in ("hybrid", "userId"):
        assert email_changes.asked(rows(identify("m-1", "x@example.com"), options=Options(project_type=project))) == []
    track = {"type": "track", "messageId": "t-1", "userId": "e1", "event": "Viewed",
             "context": {"traits": {"email": "z@example.com"}}}
    email_only = {"type": "identify", "messageId": "m-9", "traits": {"email": "solo@example.com"}}
    assert email_changes.asked(rows(track, email_only)) == []


def test_the_email_a_recorded_call_leaves_on_its_profile() -> None:
    update = rows(identify("m-1", "e1@example.com"))[0].mapped
    assert last_email(update) == "e1@example.com"
    assert last_email({"endpoint": "users/updateEmail", "body": {"currentEmail": "a@x.io", "newEmail": "b@x.io"}}) \
        == "b@x.io"
    assert last_email({"endpoint": "events/track", "body": {"email": "a@x.io"}}) is None
    assert last_email(None) is None


async def test_intake_records_the_change_between_the_two_identifies_for_one_person() -> None:
    ledger = MemoryLedger()
    intake = Intake(ledger, Metrics(), options=EMAIL, clock=lambda: NOW)
    await intake.record(rows(identify("m-1", "e1@example.com", plan="a")))
    await intake.record(rows(identify("m-2", "e1-new@example.com")))
    await intake.record(rows(identify("m-3", "E1-New@example.com", plan="b")))  # case only: nothing to change
    stored = sorted(ledger.table.values(), key=lambda r: r.id)
    assert [(r.key, r.kind) for r in stored] == [("m-1", "identify"), ("m-2:email", "email change"),
                                                 ("m-2", "identify"), ("m-3", "identify")]
    assert len({r.user_key for r in stored}) == 1  # one person, so one order
    assert stored[1].mapped == {"endpoint": "users/updateEmail",
                                "body": {"currentEmail": "e1@example.com", "newEmail": "e1-new@example.com"}}
    found = await ledger.people_known(["u:e1"], emails=True)
    assert found["u:e1"] == Known(user_id="e1", email="E1-New@example.com")


async def test_hybrid_intake_adds_no_change() -> None:
    ledger = MemoryLedger()
    intake = Intake(ledger, Metrics(), options=Options(project_type="hybrid"), clock=lambda: NOW)
    await intake.record(rows(identify("m-1", "e1@example.com"), options=Options(project_type="hybrid")))
    await intake.record(rows(identify("m-2", "e1-new@example.com"), options=Options(project_type="hybrid")))
    assert [r.key for r in ledger.table.values()] == ["m-1", "m-2"]


async def test_the_update_after_an_email_change_goes_through_the_single_queue() -> None:
    """users/updateEmail has no bulk form: the person's following users/update goes as the single call, so
    Iterable processes it after the change (SPEC section 4)."""
    ledger = MemoryLedger()
    intake = Intake(ledger, Metrics(), options=EMAIL, clock=lambda: NOW)
    await intake.record(rows(identify("m-1", "e1@example.com")))
    await intake.record(rows(identify("m-2", "e1-new@example.com")))
    later = [r for r in sorted(ledger.table.values(), key=lambda r: r.id) if r.key != "m-1"]
    items = [(r, IterableCall.thawed(r.mapped or {}, r.user_key)) for r in later]
    planned = plan(items, {}, 0.0, 60.0)
    assert planned.singles == {later[1].id} and not planned.held
    assert [[call.endpoint for _, call in wave] for wave in waves(planned.send, planned.singles)] == \
        [["users/updateEmail", "users/update"]]
    # right after the person's bulk write, the change waits for Iterable's bulk queue, and so does the update
    held = plan(items, {later[0].user_key or "": ("bulk", 0.0)}, 10.0, 60.0)
    assert held.held == {later[0].id: 50.0} and held.send == []


def test_an_email_change_row_is_not_remapped_on_its_own() -> None:
    """Its payload is the identify that brought it: re-mapped alone it would become a second users/update."""
    from datetime import UTC, datetime

    from sync.engine.remap import remap
    from sync.model import Direction, Row

    at = datetime(2026, 11, 1, tzinfo=UTC)
    row = Row(id=7, direction=Direction.OUTBOUND, key="m-1:email", kind="email change", user_key="u:e1",
              payload={"type": "identify"}, status=Status.DEAD, attempts=1, next_attempt_at=at, lease_owner=None,
              lease_expires_at=None, last_error=None, reason="HTTP 400", received_at=at, updated_at=at,
              retry_from=at)
    decided = NewEvent(direction=Direction.OUTBOUND, key="m-1:email", kind="identify", payload={},
                       user_key="u:e1")
    assert remap(row, decided) == "row 7: its email change call comes with its event; re-map the event's own row"
