"""The console's replay page (SPEC section 15) over HTTP, on both databases: preview, confirmation, the
replay Iterable sees with the original ids, and no new rows."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from sync.app import Daemon
from sync.ledger import replays as history
from sync.ledger.schema import events
from sync.model import Direction, Status
from sync.sandbox import FakeIterable
from tests.integration.test_console import base, daemon, logged_in, send  # noqa: F401 - the console daemon
from tests.support import wait_for


async def test_the_console_previews_asks_to_confirm_then_replays_with_the_original_ids(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:  # noqa: F811
    fake = fake_iterable[0]
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    await send(daemon, [{"type": "track", "userId": f"cr{n}", "messageId": f"cr-{n}", "event": "Video Played",
                         "properties": {"n": n}} for n in range(2)])
    await wait_for(lambda: len(fake.event_log) == 2)

    async def both_delivered() -> bool:
        return len(await daemon.ledger.rows(status=Status.DELIVERED)) == 2
    await wait_for(both_delivered)
    async with daemon.ledger.engine.connect() as conn:
        before = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    http, csrf = await logged_in(daemon)
    async with http:
        query = {"since": since, "event": "Video Played", "direction": "outbound"}
        async with http.get(f"{base(daemon)}/console/replay", params=query) as response:
            page = await response.text()
        assert "send <strong>2</strong> delivered rows again" in page and "cr-0" in page
        assert len(fake.event_log) == 2  # a preview sends nothing
        async with http.post(f"{base(daemon)}/console/replay", data=query, allow_redirects=False) as response:
            assert response.status == 403  # no CSRF token: no replay
        async with http.post(f"{base(daemon)}/console/replay", data={**query, "csrf": csrf}) as response:
            assert response.status == 400  # not confirmed
        async with http.post(f"{base(daemon)}/console/replay",
                             data={**query, "csrf": csrf, "confirm": "1"}) as response:
            page = await response.text()
            assert response.status == 200 and "Replay <code>replay-" in page
            run = str(response.url.query["run"])
        await wait_for(lambda: len(fake.event_log) == 4)
        assert sorted(e["id"] for e in fake.event_log[2:]) == ["cr-0", "cr-1"]

        async def progress_page() -> str:
            async with http.get(f"{base(daemon)}/console/replay", params={"run": run}) as response:
                return await response.text()
        await wait_for(lambda: _done(progress_page()))
        assert "Sent again: <strong>2</strong>" in await progress_page()
    async with daemon.ledger.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(events)) == before
    row = await daemon.ledger.get(Direction.OUTBOUND, "cr-0")
    assert row is not None
    assert [(h.run, h.outcome) for h in await history.history(daemon.ledger, row.id)] == [(run, "sent")]


async def _done(page: Awaitable[str]) -> bool:
    return "Done." in await page
