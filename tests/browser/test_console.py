"""The console in a real browser (headless Chromium) against the real ``python -m sync serve`` process.

The fakes of Iterable and Segment run in the test process. Screenshots go to a temporary directory, or to
``tests/browser/screenshots/`` (the README's) when ``UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import base64
import os
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
    await expect(page.get_by_role("status")).to_have_text("Requeued 1 rows as pending.")
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator('[data-count="outbound-delivered"]')).to_have_text("1", timeout=15_000)
    await expect(page.locator('[data-count="outbound-dead"]')).to_have_text("0")


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
    await expect(page.locator(".banner")).to_contain_text("outbound paused by an operator")

    async def paused() -> bool:
        return (await http_json("GET", f"{serve.url}/readyz"))[1]["paused"] == {"outbound": "Iterable incident"}
    await wait_for(paused)
    await page.screenshot(path=shots / "console-paused.png", full_page=True)
    await page.get_by_role("button", name="Resume outbound").click()
    await expect(page.locator(".banner")).to_have_count(0)
