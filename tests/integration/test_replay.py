"""SPEC section 15, replay: delivered rows sent again with their original ids, on both ledgers, against the
fakes; no event row is added; each replay is on the rows' history."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from sync import cli
from sync.app import Daemon
from sync.guard_commands import replay
from sync.ledger import replays as history
from sync.ledger.schema import events
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.support import WEBHOOK_TOKEN, WRITE_KEY, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def post(daemon: Daemon, path: str, body: Any, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{daemon.address[1]}{path}", json=body, headers=headers) as response:
        return response.status


async def row_count(daemon: Daemon) -> int:
    async with daemon.ledger.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(events)) or 0)


async def delivered(daemon: Daemon, count: int) -> bool:
    return len(await daemon.ledger.rows(status=Status.DELIVERED, limit=100)) >= count


def args(*words: str) -> Any:
    return cli.parser().parse_args(["ledger", "replay", *words])


TRACKS = [{"type": "track", "userId": f"r{n}", "messageId": f"orig-{n}", "event": "Video Played" if n else "Other",
           "properties": {"n": n}, "timestamp": "2026-01-02T03:04:05Z"} for n in range(3)]


async def test_a_replay_sends_delivered_rows_again_with_their_original_ids_and_adds_no_row(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = fake_iterable
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert await post(daemon, "/v1/batch", {"batch": TRACKS}, BASIC) == 200
    await wait_for(lambda: delivered(daemon, 3))
    await wait_for(lambda: len(fake.event_log) == 3)
    rows_before = await row_count(daemon)

    assert await replay(daemon.config, daemon.ledger, args("--since", since, "--event", "Video Played",
                                                           "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 delivered rows" in out and "id=orig-1" in out and "id=orig-0" not in out
    assert len(fake.event_log) == 3  # a dry run sends nothing

    assert await replay(daemon.config, daemon.ledger, args("--since", since, "--direction", "outbound",
                                                           "--event", "Video Played")) == 0
    assert "sent 2 rows again with their original ids; 0 failed" in capsys.readouterr().out
    await wait_for(lambda: len(fake.event_log) == 5)
    assert sorted(e["id"] for e in fake.event_log[3:]) == ["orig-1", "orig-2"]  # the same events, not new ones
    assert set(fake.events) == {"orig-0", "orig-1", "orig-2"}
    assert await row_count(daemon) == rows_before
    replayed = await daemon.ledger.get(Direction.OUTBOUND, "orig-1")
    assert replayed is not None and replayed.status is Status.DELIVERED
    assert [h.outcome for h in await history.history(daemon.ledger, replayed.id)] == ["sent"]

    assert await replay(daemon.config, daemon.ledger, args("--since", since, "--person", "r0")) == 0
    await wait_for(lambda: len(fake.event_log) == 6)
    assert fake.event_log[-1]["id"] == "orig-0"


async def test_an_inbound_replay_reaches_segment_with_the_original_message_id(
        daemon: Daemon, fake_segment: tuple[FakeSegment, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, _ = fake_segment
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for webhook in ITERABLE_WEBHOOKS[:2]:
        assert await post(daemon, "/iterable/webhook", webhook, {"Authorization": WEBHOOK_TOKEN}) == 200
    await wait_for(lambda: len(fake.messages) == 2)
    await wait_for(lambda: delivered(daemon, 2))
    first = [m["messageId"] for m in fake.messages]
    assert await replay(daemon.config, daemon.ledger, args("--since", since, "--direction", "inbound")) == 0
    await wait_for(lambda: len(fake.messages) == 4)
    assert sorted(m["messageId"] for m in fake.messages[2:]) == sorted(first)
    assert len(fake.unique()) == 2
    assert "sent 2 rows again" in capsys.readouterr().out


async def test_a_window_without_delivered_rows_replays_nothing(
        daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    earlier, later = (datetime.now(UTC) + timedelta(hours=k) for k in (-1, 1))
    assert await post(daemon, "/v1/batch", {"batch": TRACKS[:1]}, BASIC) == 200
    await wait_for(lambda: delivered(daemon, 1))
    for words in (("--person", "nobody@example.com"), ("--event", "Never Sent"), ("--direction", "inbound")):
        assert await replay(daemon.config, daemon.ledger, args("--since", earlier.isoformat(), *words,
                                                               "--dry-run")) == 0
        assert "dry run: 0 delivered rows" in capsys.readouterr().out
    assert await replay(daemon.config, daemon.ledger, args("--since", later.isoformat(), "--dry-run")) == 2


async def test_a_purged_row_takes_its_replay_history_with_it(ledger_url: str) -> None:
    """A bug hunt: after `ledger purge`, the replays table still named the purged ids; on SQLite a later row
    can get such an id again and showed a replay history that was never its own."""
    from sync.model import Claim, NewEvent, Settlement
    from tests.conftest import opened

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    async with opened(ledger_url) as ledger:
        await ledger.record([NewEvent(direction=Direction.OUTBOUND, key="old", kind="track", payload={},
                                      user_key="u1")], t0)
        [row] = await ledger.claim(Claim(direction=Direction.OUTBOUND, owner="w", limit=1, lease_seconds=30), t0)
        await ledger.settle(Settlement(delivered=(row.id,)), t0, owner="w")
        await history.record(ledger, "replay-1", [(row.id, "sent")], t0 + timedelta(hours=1))
        assert [r.run for r in await history.history(ledger, row.id)] == ["replay-1"]
        assert await ledger.purge(t0 + timedelta(hours=2)) == 1
        assert await history.history(ledger, row.id) == []
