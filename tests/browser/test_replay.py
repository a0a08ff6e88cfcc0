"""The console's Replay page in headless Chromium against the real ``serve`` process (SPEC section 15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from sync.sandbox import FakeIterable
from tests.browser.test_console import log_in, send, serve, shots  # noqa: F401 - fixtures
from tests.support import wait_for

pytestmark = pytest.mark.browser


async def test_preview_confirm_and_watch_a_replay_finish(
        serve: Any, browser: Browser, shots: Path, fake_iterable: tuple[FakeIterable, str]) -> None:  # noqa: F811
    fake = fake_iterable[0]
    await send(serve.url, [{"type": "track", "userId": f"br{n}", "messageId": f"br-{n}", "event": "Video Played",
                            "properties": {"n": n}} for n in range(3)])
    await wait_for(lambda: len(fake.event_log) == 3, within=15)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await log_in(page, serve.url)
    await page.get_by_role("link", name="Replay").click()
    since = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    await page.get_by_label("Received since (UTC)").fill(since)
    await page.get_by_label("Event").fill("Video Played")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#replay-count")).to_contain_text("This will send 3 delivered rows again")
    await wait_for(lambda: fake.idle)
    await page.screenshot(path=shots / "console-replay.png", full_page=True)
    assert len(fake.event_log) == 3  # a preview sends nothing
    await page.get_by_role("button", name="Replay 3 rows").click()
    await expect(page.get_by_role("status")).to_have_text("Done.", timeout=15_000)
    await expect(page.locator("#replay-progress")).to_contain_text("Sent again: 3")
    await wait_for(lambda: fake.idle)  # Iterable applies accepted writes after a delay
    assert sorted(e["id"] for e in fake.event_log[3:]) == ["br-0", "br-1", "br-2"]
