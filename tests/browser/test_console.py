"""The console in a real browser (headless Chromium) against the real ``python -m sync serve`` process.

The fakes of Iterable and Segment run in the test process. Screenshots go to a temporary directory, or to
``tests/browser/screenshots/`` (the README's) when ``UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from sync.sandbox import FakeIterable, FakeSegment
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.processes import free_port, http_json
from tests.support import WEBHOOK_TOKEN, WRITE_KEY, daemon_config, wait_for

pytestmark = pytest.mark.browser

TOKEN = "browser-console-token-0123456789"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
SHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return SHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


@pytest.fixture
async def serve(spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str],
                fake_segment: tuple[FakeSegment, str]) -> AsyncIterator[Any]:
    port = free_port()
    extra = f'[console]\nenabled = true\ntokens = ["{TOKEN}"]\n'
    process = spawn(daemon_config(port, f"sqlite:///{tmp_path}/ledger.db", fake_iterable[1], fake_segment[1],
                                  extra=extra), port=port)
    await process.ready()
    yield process
    await process.stop()


async def log_in(page: Page, url: str) -> None:
    await page.goto(f"{url}/console")
    await expect(page).to_have_url(f"{url}/console/login")
    await page.get_by_label("Console token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def send(url: str, batch: list[dict[str, Any]]) -> None:
    status, body = await http_json("POST", f"{url}/v1/batch", headers=BASIC, json={"batch": batch})
    assert status == 200, body


async def test_log_in_and_watch_the_counts_change_without_reloading(
        serve: Any, browser: Browser, shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{serve.url}/console/login")
    await page.get_by_label("Console token").fill("not-the-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await log_in(page, serve.url)
    delivered = page.locator('[data-count="outbound-delivered"]')
    await expect(delivered).to_have_text("0")
    await page.evaluate("window.stillThisPage = true")
    await send(serve.url, [{"type": "track", "userId": f"watch-{n}", "event": "Song Played",
                            "messageId": f"watch-{n}"} for n in range(3)])
    await expect(delivered).to_have_text("3", timeout=15_000)  # the overview refreshes by itself
    assert await page.evaluate("window.stillThisPage") is True
    await expect(page.locator('[data-delivered="outbound"]')).to_have_text("3")
    await page.screenshot(path=shots / "console-overview.png", full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
    await page.screenshot(path=shots / "console-overview-phone.png", full_page=True)


async def test_read_a_dead_letter_retry_it_and_see_it_delivered(
        serve: Any, browser: Browser, shots: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake = fake_iterable[0]
    fake.poison_emails = {"dead@example.com"}
    await send(serve.url, [{"type": "identify", "userId": "dl-1", "messageId": "dl-1",
                            "traits": {"email": "dead@example.com", "plan": "pro"}}])
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await log_in(page, serve.url)
    await expect(page.locator('[data-count="outbound-dead"]')).to_have_text("1", timeout=15_000)
    await page.get_by_role("link", name="Dead letters").click()
    await expect(page.locator("#matching")).to_have_text("1")
    await page.screenshot(path=shots / "console-dead-letters.png", full_page=True)
    await page.get_by_role("link", name="#").first.click()
    await expect(page.locator("#reason")).to_contain_text("400")
    await expect(page.locator("pre.payload").first).to_contain_text('"plan": "pro"')
    await page.screenshot(path=shots / "console-dead-letter.png", full_page=True)
    fake.poison_emails = set()  # the upstream problem is fixed
    await page.get_by_role("button", name="Retry this row").click()
    await expect(page.locator("#confirm-count")).to_contain_text("This will requeue 1 row as pending")
    await page.get_by_role("button", name="Requeue 1 row").click()
    await expect(page.get_by_role("status")).to_have_text("Requeued 1 row as pending.")
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator('[data-count="outbound-delivered"]')).to_have_text("1", timeout=15_000)
    await expect(page.locator('[data-count="outbound-dead"]')).to_have_text("1")  # dead-lettered in 24 h: it was


async def test_follow_one_person_across_both_directions(
        serve: Any, browser: Browser, shots: Path) -> None:
    email = "docs@iterable.com"
    await send(serve.url, [
        {"type": "identify", "userId": "docs-1", "messageId": "p-1", "traits": {"email": email}},
        {"type": "track", "userId": "docs-1", "event": "Order Completed", "messageId": "p-2",
         "properties": {"total": 30, "products": [{"id": "sku-1", "name": "Sku 1", "price": 30, "quantity": 1}]}},
        {"type": "track", "userId": "docs-1", "event": "Order Completed", "messageId": "p-3"},  # no total
    ])
    status, _ = await http_json("POST", f"{serve.url}/iterable/webhook", json=ITERABLE_WEBHOOKS[1],
                                headers={"Authorization": WEBHOOK_TOKEN})
    assert status == 200
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await log_in(page, serve.url)
    await expect(page.locator('[data-count="inbound-delivered"]')).to_have_text("1", timeout=15_000)
    await page.get_by_role("link", name="Person").click()
    await page.get_by_label("Email or userId").fill("docs-1")
    await page.keyboard.press("Enter")  # the form works from the keyboard
    rows = page.locator("table.timeline tbody tr")
    await expect(rows).to_have_count(4)
    texts = await rows.all_inner_texts()
    assert ["Segment → Iterable" in t for t in texts] == [True, True, True, False]
    assert "Iterable → Segment" in texts[3] and "emailOpen" in texts[3] and "Segment track" in texts[3]
    assert "commerce/trackPurchase" in texts[1] and "delivered" in texts[1]
    assert "rejected" in texts[2] and "properties.total" in texts[2]
    await page.screenshot(path=shots / "console-person.png", full_page=True)


async def test_without_a_session_or_with_a_wrong_csrf_token_nothing_changes(
        serve: Any, browser: Browser, shots: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{serve.url}/console/rows?status=dead")
    await expect(page).to_have_url(f"{serve.url}/console/login")
    answer = await page.request.post(f"{serve.url}/console/pause", form={"direction": "outbound"})
    assert answer.status == 401
    await log_in(page, serve.url)
    forged = await page.request.post(f"{serve.url}/console/pause", form={"direction": "outbound", "csrf": "x" * 64})
    assert forged.status == 403  # the session cookie went along; the CSRF token did not match
    assert (await http_json("GET", f"{serve.url}/readyz"))[1]["paused"] == {}
    await page.reload()
    await expect(page.locator(".banner")).to_have_count(0)
    # a pause made from the keyboard: the reason field, then Tab to its button and Enter
    await page.get_by_label("Reason").first.fill("Iterable incident")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#pause-confirm")).to_contain_text("Nothing will be sent to Iterable")  # asks first
    assert (await http_json("GET", f"{serve.url}/readyz"))[1]["paused"] == {}
    await page.get_by_role("button", name="Yes, pause outbound").click()
    await expect(page.locator(".banner")).to_contain_text("outbound paused by an operator")

    async def paused() -> bool:
        return (await http_json("GET", f"{serve.url}/readyz"))[1]["paused"] == {"outbound": "Iterable incident"}
    await wait_for(paused)
    await page.screenshot(path=shots / "console-paused.png", full_page=True)
    await page.get_by_role("button", name="Resume outbound").click()
    await expect(page.locator(".banner")).to_have_count(0)


async def test_why_did_user_x_not_get_event_y(serve: Any, browser: Browser, shots: Path,
                                             fake_iterable: tuple[FakeIterable, str]) -> None:
    """The issue's "Done when", walked as an on-call operator would, at 1280 px and then at 390 px."""
    fake = fake_iterable[0]
    fake.disallowed_event_names = {"Beta Opened"}
    await send(serve.url, [{"type": "track", "userId": f"beta-{n}", "event": "Beta Opened", "messageId": f"beta-{n}"}
                           for n in range(3)] + [
        {"type": "track", "userId": "fan-1", "event": "Song Played", "messageId": "song-1"},
        {"type": "group", "userId": "fan-1", "groupId": "band", "messageId": "group-1"}])
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await log_in(page, serve.url)
    # the overview: the failure trend and the latency, from counters
    await expect(page.locator('[data-count="outbound-dead"]')).to_have_text("3", timeout=15_000)
    await expect(page.locator('[data-count="outbound-delivered"]')).to_have_text("1")
    await expect(page.locator('[data-latency="outbound-p95"]')).to_contain_text(" ms")
    await expect(page.locator('[data-last-delivery="outbound"]')).to_contain_text("ago")
    chart = page.locator("section", has=page.locator("#dir-outbound")).locator("svg.chart")
    await expect(chart).to_have_attribute("aria-label", re.compile(r"\(1 delivered, 3 dead\)"))
    await page.screenshot(path=shots / "console-overview.png", full_page=True)
    # find the dead letter by event name, then by messageId
    await page.get_by_role("link", name="Dead letters").click()
    await page.get_by_label("Event name").fill("Beta Opened")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#matching")).to_have_text("3")
    await page.get_by_label("Event name").fill("")
    await page.get_by_label("messageId").fill("beta-1")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#matching")).to_have_text("1")
    await expect(page.locator("table.rows tbody tr")).to_contain_text("beta-1")  # the person column
    await page.screenshot(path=shots / "console-dead-letters.png", full_page=True)
    # its attempt history, with Iterable's answer
    await page.get_by_role("link", name="#").first.click()
    await expect(page.locator("#reason")).to_contain_text('disallowedEventNames (event "Beta Opened")')
    history = page.locator("#history tbody tr")
    await expect(history).to_have_count(1)
    await expect(history.first).to_contain_text("events/trackBulk")
    await expect(history.first).to_contain_text("disallowedEventNames named this item")
    await page.screenshot(path=shots / "console-dead-letter.png", full_page=True)
    # follow the person from the row
    await page.get_by_role("link", name="timeline").click()
    await expect(page.locator("table.timeline tbody tr")).to_have_count(1)
    await expect(page.locator("table.timeline tbody tr")).to_contain_text("Beta Opened")
    # open the group, retry it once Iterable allows the event again, watch it deliver
    await page.get_by_role("link", name="Failure groups").click()
    group = page.locator('tr[data-group="outbound|disallowed event name|Beta Opened"]')
    await expect(group.locator("[data-total]")).to_have_text("3")
    await page.screenshot(path=shots / "console-groups.png", full_page=True)
    fake.disallowed_event_names = set()
    await group.get_by_role("button", name="Retry 3 rows").click()
    await page.get_by_role("button", name="Requeue 3 rows").click()
    await expect(page.get_by_role("status")).to_have_text("Requeued 3 rows as pending.")
    await wait_for(lambda: all(f"beta-{n}" in fake.events for n in range(3)), within=15)
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator('[data-count="outbound-delivered"]')).to_have_text("4", timeout=15_000)
    # retry a skipped row: a re-decision, and the page says so
    await page.get_by_role("link", name="Skipped").click()
    await page.get_by_role("link", name="#").first.click()
    await page.get_by_role("button", name="Retry this row").click()
    await expect(page.locator("#confirm-count")).to_contain_text("This is a re-decision")
    await page.get_by_role("button", name="Requeue 1 row").click()
    await expect(page.get_by_role("status")).to_have_text("Decided 1 row again under the current mapping.")
    await page.get_by_role("link", name="#").first.click()
    await expect(page.locator("#history")).to_contain_text("was skipped; decided again under mapping")
    await expect(page.locator("#reason")).to_contain_text("group is not supported by Iterable")
    # a phone: stacked cards, the reason in view, nothing wider than the screen
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.get_by_role("link", name="Skipped").click()
    reason = page.locator("td.reason").first
    await expect(reason).to_be_visible()
    box = await reason.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await expect(page.locator("td[data-label=Changed] .rel").first).to_have_text(re.compile(r"\((just now|\d+ s ago)\)"))
    await page.screenshot(path=shots / "console-rows-phone.png", full_page=True)
