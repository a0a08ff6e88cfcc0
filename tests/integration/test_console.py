"""The console over plain HTTP (SPEC section 12): sessions, CSRF, retry, pause, timelines, what pages never show.

The browser suite (tests/browser) drives the same pages in Chromium; these tests pin the contract at the
HTTP level, on both databases, against the real daemon in-process.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import yarl

from sync.app import Daemon
from sync.http.console import session
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment
from tests.conftest import started
from tests.support import ITERABLE_KEY, WRITE_KEY, make_config, wait_for

TOKEN = "console-token-for-tests-0123456789"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


@pytest.fixture
async def daemon(ledger_url: str, fake_iterable: tuple[FakeIterable, str],
                 fake_segment: tuple[FakeSegment, str]) -> AsyncIterator[Daemon]:
    config = make_config(ledger_url=ledger_url, iterable_url=fake_iterable[1], segment_url=fake_segment[1],
                         console={"enabled": True, "tokens": ["an-older-token-still-valid", TOKEN]})
    async with started(config, ledger_url) as running:
        yield running


def base(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.address[1]}"


async def send(daemon: Daemon, batch: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{base(daemon)}/v1/batch", json={"batch": batch},
                                                          headers=BASIC) as response:
        assert response.status == 200, await response.text()


async def logged_in(daemon: Daemon) -> tuple[aiohttp.ClientSession, str]:
    """A client holding a session, and the CSRF token its pages carry."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.post(f"{base(daemon)}/console/login", data={"token": TOKEN}, allow_redirects=False) as response:
        assert response.status == 303
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    async with http.get(f"{base(daemon)}/console") as response:
        page = await response.text()
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:500]
    return http, found.group(1)


async def dead_row(daemon: Daemon, fake: FakeIterable, key: str = "c-dead") -> int:
    fake.poison_emails = {"dead@example.com"}
    await send(daemon, [{"type": "identify", "userId": "cd", "messageId": key, "traits": {"email": "dead@example.com"}}])

    async def dead() -> bool:
        row = await daemon.ledger.get(Direction.OUTBOUND, key)
        return row is not None and row.status is Status.DEAD
    await wait_for(dead)
    row = await daemon.ledger.get(Direction.OUTBOUND, key)
    assert row is not None
    return row.id


async def test_no_page_and_no_action_without_a_session(daemon: Daemon,
                                                       fake_iterable: tuple[FakeIterable, str]) -> None:
    row_id = await dead_row(daemon, fake_iterable[0])
    async with aiohttp.ClientSession() as http:
        for path in ("/console", "/console/overview", "/console/rows?status=dead", f"/console/rows/{row_id}",
                     "/console/person?q=cd"):
            async with http.get(f"{base(daemon)}{path}", allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/console/login", path
                assert "dead@example.com" not in await response.text()
        for path, form in (("/console/retry", {"id": str(row_id), "status": "dead", "confirm": "1"}),
                           ("/console/pause", {"direction": "outbound"})):
            async with http.post(f"{base(daemon)}{path}", data=form, allow_redirects=False) as response:
                assert response.status == 401, path
        forged = {session_cookie(): "9999999999.00.00"}
        async with http.get(f"{base(daemon)}/console", cookies=forged, allow_redirects=False) as response:
            assert response.status == 303
    row = await daemon.ledger.get(Direction.OUTBOUND, "c-dead")
    assert row is not None and row.status is Status.DEAD
    assert (await daemon.ledger.stats()).paused == {}


def session_cookie() -> str:
    from sync.http.console.session import COOKIE
    return COOKIE


async def test_a_wrong_token_gets_no_session(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{base(daemon)}/console/login", data={"token": TOKEN[:-1]}, allow_redirects=False) as response:
        assert response.status == 401
        assert "Set-Cookie" not in response.headers
        assert "not valid" in await response.text()


async def test_a_wrong_csrf_token_changes_nothing(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    row_id = await dead_row(daemon, fake_iterable[0])
    http, csrf = await logged_in(daemon)
    async with http:
        for form in ({"csrf": "0" * 64}, {}):
            retry = {**form, "id": str(row_id), "status": "dead", "confirm": "1"}
            async with http.post(f"{base(daemon)}/console/retry", data=retry, allow_redirects=False) as response:
                assert response.status == 403
            async with http.post(f"{base(daemon)}/console/pause", data={**form, "direction": "outbound"},
                                 allow_redirects=False) as response:
                assert response.status == 403
    row = await daemon.ledger.get(Direction.OUTBOUND, "c-dead")
    assert row is not None and row.status is Status.DEAD
    assert (await daemon.ledger.stats()).paused == {}


async def test_retry_asks_to_confirm_then_the_dead_letter_is_delivered(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake = fake_iterable[0]
    row_id = await dead_row(daemon, fake)
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/rows?status=dead") as response:
            page = await response.text()
        assert f"#{row_id}" in page and "dead@example.com" not in page.split("<tbody>")[0]
        form = {"csrf": csrf, "status": "dead", "all": "1"}
        async with http.post(f"{base(daemon)}/console/retry", data=form) as response:
            assert "requeue <strong>1</strong> row" in await response.text()
        assert (await daemon.ledger.get(Direction.OUTBOUND, "c-dead")).status is Status.DEAD  # type: ignore[union-attr]
        fake.poison_emails = set()
        async with http.post(f"{base(daemon)}/console/retry", data={**form, "confirm": "1"}) as response:
            assert "Requeued 1 row as pending" in await response.text()

    async def delivered() -> bool:
        row = await daemon.ledger.get(Direction.OUTBOUND, "c-dead")
        return row is not None and row.status is Status.DELIVERED
    await wait_for(delivered)


class PauseLooks:
    """What the ledger answers the outbound worker asking whether an operator paused it, one answer a round."""

    def __init__(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        self.daemon = daemon
        self.answers: list[str | None] = []
        real = daemon.ledger.held_by_operator

        async def held_by_operator(direction: Direction) -> str | None:
            reason = await real(direction)
            if direction is Direction.OUTBOUND:
                self.answers.append(reason)
            return reason

        monkeypatch.setattr(daemon.ledger, "held_by_operator", held_by_operator)

    async def another(self) -> str | None:
        """Have the workers look again now (as the console's pause does), and return what they were told."""
        seen = len(self.answers)
        for worker in self.daemon.workers:
            worker.recheck()
        await wait_for(lambda: len(self.answers) > seen)
        return self.answers[-1]


async def test_a_manual_pause_holds_delivery_until_resumed(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], monkeypatch: pytest.MonkeyPatch) -> None:
    looks = PauseLooks(daemon, monkeypatch)
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.post(f"{base(daemon)}/console/pause",
                             data={"csrf": csrf, "direction": "outbound", "reason": "Iterable incident"}) as response:
            assert "Yes, pause outbound" in await response.text()  # a pause asks for confirmation first
        assert (await daemon.ledger.stats()).paused == {}
        async with http.post(f"{base(daemon)}/console/pause", data={"csrf": csrf, "direction": "outbound",
                                                                   "reason": "Iterable incident", "confirm": "1"}) \
                as response:
            page = await response.text()
        assert "outbound paused" in page and "Iterable incident" in page
        await send(daemon, [{"type": "track", "userId": "p1", "event": "Waits", "messageId": "c-paused"}])
        async with http.get(f"{base(daemon)}/readyz") as response:
            assert (await response.json())["paused"] == {"outbound": "Iterable incident"}
        # three rounds see the pause with the row pending: the first two ended (sent and settled, had they not)
        assert [await looks.another() for _ in range(3)] == ["Iterable incident"] * 3
        row = await daemon.ledger.get(Direction.OUTBOUND, "c-paused")
        assert row is not None and row.status is Status.PENDING and row.attempts == 0
        async with http.post(f"{base(daemon)}/console/resume", data={"csrf": csrf, "direction": "outbound"}):
            pass

    async def delivered() -> bool:
        found = await daemon.ledger.get(Direction.OUTBOUND, "c-paused")
        return found is not None and found.status is Status.DELIVERED
    await wait_for(delivered)
    spans = await daemon.ledger.downtime(Direction.OUTBOUND, row.received_at.replace(year=2000))
    assert [(s.kind, s.reason, s.ended_at is not None) for s in spans] == [("manual", "Iterable incident", True)]


async def test_a_timeline_follows_one_person_and_pages_never_show_secrets(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    await send(daemon, [
        {"type": "identify", "userId": "tl-1", "messageId": "tl-a", "traits": {"email": "Tim@Example.com"}},
        {"type": "track", "userId": "tl-1", "event": "Order Completed", "messageId": "tl-b",
         "properties": {"total": 12.5, "note": f"pasted {ITERABLE_KEY} by mistake"}},
        {"type": "track", "userId": "someone-else", "event": "Other", "messageId": "tl-c"},
        {"type": "track", "userId": "tl-1", "event": "Order Completed", "messageId": "tl-d"},  # no total
    ])
    http, _ = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/person", params={"q": "tim@example.com"}) as response:
            page = await response.text()
        assert page.index("identify") < page.index("Order Completed")
        assert "Other" not in page
        assert "Iterable POST commerce/trackPurchase" in page  # what each event became
        assert "rejected" in page and "properties.total: required" in page  # and why one became nothing
        row = await daemon.ledger.get(Direction.OUTBOUND, "tl-b")
        assert row is not None
        async with http.get(f"{base(daemon)}/console/rows/{row.id}") as response:
            detail = await response.text()
        assert ITERABLE_KEY not in detail and "pasted *** by mistake" in detail


async def test_pages_name_bad_filters_instead_of_failing(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    async with http, http.get(f"{base(daemon)}/console/rows",
                              params={"status": "delivered", "since": "yesterday"}) as response:
        page = await response.text()
    assert response.status == 200
    assert "status: one of" in page and "since: a date and time" in page


async def test_a_form_that_does_not_parse_a_time_out_of_range_and_tls_behind_a_proxy(daemon: Daemon) -> None:
    """A console bug hunt: a multipart body without its boundary was a 500 with a traceback (login needs no
    session); a replay window of year 1 with an offset was a 500, and its confirmed run said "Running..." for
    ever; behind a TLS-terminating proxy the session cookie never got `Secure`."""
    broken = {"Content-Type": "multipart/form-data"}
    async with aiohttp.ClientSession() as anonymous, anonymous.post(
            f"{base(daemon)}/console/login", data=b"x", headers=broken) as response:
        assert response.status == 400, await response.text()
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.post(f"{base(daemon)}/console/retry", data=b"x",
                             headers={**broken, "X-CSRF-Token": csrf}) as response:
            assert response.status == 400
        for query in ("since=0001-01-01T00:00:00%2B01:00", "since=2026-01-01&until=9999-12-31T23:59:59-01:00"):
            async with http.get(f"{base(daemon)}/console/replay?{query}") as response:
                assert response.status == 200 and "between 1970 and 9000" in await response.text()
        async with http.post(f"{base(daemon)}/console/replay", allow_redirects=False,
                             data={"since": "0001-01-01T00:00:00+01:00", "confirm": "1", "csrf": csrf}) as response:
            assert response.status == 400
    async with aiohttp.ClientSession() as proxied, proxied.post(
            f"{base(daemon)}/console/login", data={"token": TOKEN}, allow_redirects=False,
            headers={"X-Forwarded-Proto": "https"}) as response:
        assert response.status == 303 and "Secure" in response.headers["Set-Cookie"]


async def test_a_nul_or_non_utf8_filter_is_a_400_not_a_ledger_outage(daemon: Daemon,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A bug hunt: on PostgreSQL a NUL in a console filter reached the database, came back as a 503, and the log
    and /readyz reported the ledger unable to commit ingest (a false outage alarm for an operator's typo)."""
    http, csrf = await logged_in(daemon)
    async with http:
        for query in ("person?q=a%00b", "rows?person=a%00b", "rows?reason=%00",
                      "replay?since=2026-11-01T00:00&person=%00", "rows?a%00=1"):
            async with http.get(yarl.URL(f"{base(daemon)}/console/{query}", encoded=True)) as response:
                assert response.status == 400, (query, response.status)
                assert "NUL character or is not UTF-8" in await response.text()
        async with http.post(f"{base(daemon)}/console/retry",
                             data={"csrf": csrf, "all": "1", "person": "a\x00b"}) as response:
            assert response.status == 400
        async with http.get(f"{base(daemon)}/readyz") as response:
            assert response.status == 200 and (await response.json())["ready"] is True
    assert "ledger cannot commit" not in caplog.text and "ledger is unavailable" not in caplog.text


async def test_readyz_shows_a_pause_reason_without_its_email(daemon: Daemon) -> None:
    """A bug hunt: /readyz needs no login, and showed an operator's pause reason as typed (the log masked it)."""
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.post(f"{base(daemon)}/console/pause", data={
                "csrf": csrf, "direction": "outbound", "reason": "asked by carol@example.com", "confirm": "1"}):
            pass
        await wait_for(lambda: daemon.paused() != {})  # the worker reads the pause from the ledger
        async with http.get(f"{base(daemon)}/readyz") as response:
            body = await response.text()
    assert "carol@example.com" not in body and "asked by [email]" in body


async def test_a_second_pause_keeps_the_first_reason_and_says_so(daemon: Daemon,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A bug hunt: a second pause logged "paused ... reason=second pause" while /readyz and `ledger stats` kept
    the first reason."""
    caplog.set_level("INFO", logger="sync.http.console")
    http, csrf = await logged_in(daemon)
    async with http:
        for reason in ("first pause", "second pause"):
            async with http.post(f"{base(daemon)}/console/pause", data={
                    "csrf": csrf, "direction": "outbound", "reason": reason, "confirm": "1"}):
                pass
        await wait_for(lambda: daemon.paused() != {})  # the worker reads the pause from the ledger
        async with http.get(f"{base(daemon)}/readyz") as response:
            assert (await response.json())["paused"] == {"outbound": "first pause"}
    assert (await daemon.ledger.stats()).paused == {"outbound": "first pause"}
    said = [(r.getMessage(), getattr(r, "reason", None)) for r in caplog.records if r.name == "sync.http.console"]
    assert ("direction already paused from the console", "first pause") in said
    assert all(reason != "second pause" for _, reason in said)


async def test_a_logged_out_session_is_refused_even_with_a_copy_of_its_cookie(daemon: Daemon) -> None:
    """Sessions are signed cookies: logging out only deleted the browser's copy, and a copied cookie kept
    working until it expired. Now the ledger remembers the ended session, for every replica."""
    http, csrf = await logged_in(daemon)
    async with http:
        copied = http.cookie_jar.filter_cookies(yarl.URL(f"{base(daemon)}/console"))[session.COOKIE].value
        async with http.post(f"{base(daemon)}/console/logout", data={"csrf": csrf}, allow_redirects=False) as response:
            assert response.status == 303
    async with aiohttp.ClientSession(cookies={session.COOKIE: copied}) as thief:
        async with thief.get(f"{base(daemon)}/console/rows", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/console/login"
    other, _ = await logged_in(daemon)  # other sessions go on
    async with other, other.get(f"{base(daemon)}/console/rows", allow_redirects=False) as response:
        assert response.status == 200


async def test_the_rows_page_counts_the_rows_it_lists(daemon: Daemon) -> None:
    """A fresh-eyes walk: "10 rows match" (and "Retry all 10 matching") above a list of 13, the three more a
    forgotten person's tombstones, counted by neither the count nor the retry."""
    await send(daemon, [{"type": "track", "anonymousId": f"nobody-{n}", "event": "E", "messageId": f"cnt-{n}"}
                        for n in range(3)] + [
        {"type": "group", "userId": "gone-1", "groupId": "g", "messageId": "cnt-g1"},
        {"type": "group", "userId": "kept-1", "groupId": "g", "messageId": "cnt-g2"}])
    await daemon.ledger.forget("u:gone-1", datetime.now(UTC))
    http, _ = await logged_in(daemon)
    async with http, http.get(f"{base(daemon)}/console/rows", params={"status": "skipped"}) as response:
        page = await response.text()
    listed = len(re.findall(r'<a href="/console/rows/\d+">', page))
    said = re.search(r'<strong id="matching">(\d+)</strong>', page)
    assert said is not None and int(said.group(1)) == listed > 0
    assert "forgotten" not in page.split("<tbody>")[1]


async def test_a_refused_console_action_is_a_page_with_the_reason_not_json(daemon: Daemon) -> None:
    """A fresh-eyes walk in a browser: "Retry selected" with nothing ticked, a purged row's old link, or an
    action from a tab whose session had ended showed a bare JSON error with no way on."""
    http, csrf = await logged_in(daemon)
    async with http:
        rows_page = f"{base(daemon)}/console/rows?status=dead"
        async with http.post(f"{base(daemon)}/console/retry", data={"csrf": csrf},
                             headers={"Referer": rows_page}) as response:
            page = await response.text()
            assert response.status == 400 and response.content_type == "text/html"
            assert "select rows to retry" in page and 'href="/console/rows?status=dead"' in page
        async with http.get(f"{base(daemon)}/console/rows/999999") as response:
            assert response.status == 404 and "no such row" in await response.text()
    async with aiohttp.ClientSession() as stale, stale.post(f"{base(daemon)}/console/pause",
                                                              data={"direction": "outbound"}) as response:
        assert response.status == 401 and 'href="/console/login"' in await response.text()


async def test_a_replay_this_process_does_not_know_does_not_say_running_for_ever(daemon: Daemon) -> None:
    """A browser walk: after a restart (or on another replica) a replay's page said "Running..." for ever."""
    http, _ = await logged_in(daemon)
    async with http, http.get(f"{base(daemon)}/console/replay", params={"run": "replay-unknown1234"}) as response:
        page = await response.text()
    assert response.status == 200 and "Running" not in page and "not known to this process" in page
    assert 'hx-trigger="every 1s"' not in page
