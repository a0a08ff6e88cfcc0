"""What a forget erases and what the ledger knows of a person (issue 22): one contract, run on SQLite,
PostgreSQL and the in-memory ledger alike (the decisions are ``sync.ledger.decisions``; fixtures in ``tests.ledgers``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.model import Direction, Known, NewEvent, Status
from tests import ledgers
from tests.ledgers import AnyLedger

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OUT, IN = Direction.OUTBOUND, Direction.INBOUND
ledger_url, ledger = ledgers.ledger_url, ledgers.ledger  # every ledger: memory, SQLite, PostgreSQL
PERSON = ("u:ana-5", "e:ana5@example.com")


def new(key: str, *, direction: Direction = OUT, status: Status = Status.PENDING, user_key: str | None = None,
        identities: tuple[str, ...] = PERSON, payload: dict[str, Any] | None = None, **kw: Any) -> NewEvent:
    return NewEvent(direction=direction, key=key, kind=kw.pop("kind", "track"), status=status, user_key=user_key,
                    identities=identities, payload=payload or {"userId": "ana-5", "email": "ana5@example.com"}, **kw)


async def every_row(ledger: Any) -> list[Any]:
    found = []
    for status in Status:
        found += await ledger.rows(status=status, limit=1000)
    return found


async def forgets_held_originals_and_the_visitors_later_rows(ledger: Any) -> None:
    anonymous = {"anonymousId": "anon-ana", "context": {"ip": "198.51.100.5"}}
    await ledger.record([new("h-1", status=Status.HELD, user_key="anon:anon-ana", identities=(), payload=anonymous),
                         new("x-1", status=Status.HELD, user_key="anon:someone", identities=(), payload={"n": 1})], T0)
    await ledger.record([new("id-1", payload={"userId": "ana-5", "anonymousId": "anon-ana"}),
                         new("h-1:released", replaces=("h-1",), payload={**anonymous, "userId": "ana-5"}),
                         new("in-1", direction=IN, identities=(PERSON[1],), consent=None)], T0)
    await ledger.record([new("h-2", status=Status.HELD, user_key="anon:anon-ana", identities=(), payload=anonymous)],
                        T0)
    assert (await ledger.get(OUT, "h-1")).reason == "released as h-1:released"
    assert await ledger.forget("e:ANA5@example.com ".strip().lower(), T0) == 5
    text = json.dumps([r.__repr__() for r in await every_row(ledger)])
    assert "ana" not in text.replace("anon:someone", "") and "198.51.100.5" not in text
    assert (await ledger.get(OUT, "h-2")).status is Status.SKIPPED
    assert (await ledger.get(OUT, "x-1")).status is Status.HELD  # somebody else's visit stays
    assert await ledger.people_known(list(PERSON)) == {p: Known() for p in PERSON}


async def a_skipped_deletion_still_forgets(ledger: Any) -> None:
    await ledger.record([new("a-1"), new("a-2", status=Status.SKIPPED, reason="group")], T0)
    await ledger.record([new("del", kind="delete", status=Status.SKIPPED, forgets=True,
                             reason='user deletion is not forwarded to Iterable (outbound.deletion = "skip")')], T0)
    rows = {r.key: r for r in await every_row(ledger)}
    assert all(r.payload.get("forgotten") for r in rows.values())
    assert rows["a-1"].status is Status.SKIPPED and rows["a-1"].reason == "user deleted"


async def purge_prunes_links_and_consents(ledger: Any) -> None:
    await ledger.record([new("p-1", status=Status.SKIPPED, consent={"Ads": True}),
                         new("q-1", status=Status.PENDING, identities=("u:stays",), consent={"Ads": False})], T0)
    assert (await ledger.people_known(["e:ana5@example.com"]))["e:ana5@example.com"] == \
        Known(user_id="ana-5", consent={"Ads": True})
    await ledger.purge(T0 + timedelta(days=1))
    assert await ledger.people_known(["e:ana5@example.com", "u:stays"]) == {
        "e:ana5@example.com": Known(), "u:stays": Known(user_id="stays", consent={"Ads": False})}


async def the_last_consent_seen_wins(ledger: Any) -> None:
    await ledger.record([new("c-1", consent={"Ads": True})], T0)
    await ledger.record([new("c-2", identities=(PERSON[1],), consent={"Ads": False}), new("c-3", consent=None)],
                        T0 + timedelta(minutes=1))
    assert (await ledger.people_known([PERSON[0]]))[PERSON[0]].consent == {"Ads": False}


CONTRACT: list[Callable[[Any], Awaitable[None]]] = [
    forgets_held_originals_and_the_visitors_later_rows, a_skipped_deletion_still_forgets,
    purge_prunes_links_and_consents, the_last_consent_seen_wins]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_every_ledger(ledger: AnyLedger, check: Callable[[Any], Awaitable[None]]) -> None:
    await check(ledger)
