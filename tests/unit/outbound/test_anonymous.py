"""SPEC section 11: held anonymous events are released with the identity of the event that identified the
visitor, whatever ``[outbound.identity]`` paths say where identities are read."""

from __future__ import annotations

import pytest

from sync.engine.intake import outbound_row
from sync.mapping.rules import Identity, OutboundMapping
from sync.model import Status
from sync.outbound.anonymous import identity_of
from sync.outbound.mapper import Options, raw_ids

HELD = {"type": "track", "anonymousId": "a1", "event": "Viewed", "messageId": "h1"}
CUSTOM = [
    (Identity(user_id_paths=("context.traits.user_id",)), "u9", None, {"userId": "u9"}),
    (Identity(email_paths=("context.traits.mail",)), None, "v@example.com", {"email": "v@example.com"}),
    (Identity(user_id_paths=("properties.account",), email_paths=("properties.contact",)), "u9", "v@example.com",
     {"userId": "u9", "email": "v@example.com"}),
    (Identity(), "u9", "v@example.com", {"userId": "u9", "email": "v@example.com"}),
]


@pytest.mark.parametrize(("identity", "userid", "email", "expected"), CUSTOM)
def test_a_released_event_names_who_released_it_whatever_the_identity_paths(
        identity: Identity, userid: str | None, email: str | None, expected: dict[str, str]) -> None:
    """The tester's bug: the identity was written at Segment's places only, so under custom paths the released
    row was skipped for "no email or userId" and the held event was lost."""
    released = identity_of(HELD, userid, email)
    assert raw_ids(released, identity) == expected
    row = outbound_row(released, Options(mapping=OutboundMapping(identity=identity)), None)
    assert row.status is Status.PENDING and row.mapped is not None
    assert row.mapped["body"]["userId" if userid else "email"] == (userid or email)


def test_a_held_events_own_identifier_wins_over_the_released_one() -> None:
    identity = Identity(user_id_paths=("context.traits.user_id",))
    held = {**HELD, "context": {"traits": {"user_id": "own"}}}
    assert raw_ids(identity_of(held, "u9", "v@example.com"), identity) == {"userId": "own", "email": "v@example.com"}


def test_an_incoming_event_cannot_carry_the_released_identity() -> None:
    """The identity a released event carries is the daemon's: a client sending it would name anyone."""
    from sync.engine.intake import outbound_rows
    from sync.outbound.anonymous import RELEASED_IDENTITY
    from sync.outbound.mapper import Options

    rows, rejected = outbound_rows([{"type": "track", "event": "E", "messageId": "m", "anonymousId": "a",
                                     RELEASED_IDENTITY: {"userId": "someone-else"}}], Options())
    assert [r.error for r in rejected] == [f"{RELEASED_IDENTITY}: reserved for the events the daemon releases"]
