"""The console's "finding and explaining" (SPEC section 12) over plain HTTP, on both databases: the attempt
history with Iterable's answer, retry as a re-decision, finding rows by event name, messageId and person,
and malformed inputs answered with a 400 or a redirect.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from sync.app import Daemon
from sync.model import Direction, Status
from sync.sandbox import FakeIterable
from tests.integration.test_console import base, daemon, logged_in, send
from tests.support import wait_for

__all__ = ["daemon"]  # the console daemon fixture


async def settled(daemon: Daemon, key: str, status: Status) -> int:
    async def reached() -> bool:
        row = await daemon.ledger.get(Direction.OUTBOUND, key)
        return row is not None and row.status is status
    await wait_for(reached)
    row = await daemon.ledger.get(Direction.OUTBOUND, key)
    assert row is not None
    return row.id


def history_of(page: str) -> list[tuple[str, ...]]:
    """The history table's rows as (outcome, endpoint, HTTP) triples."""
    table = page.split('id="history"', 1)[1].split("</table>", 1)[0]
    found = re.findall(r'data-outcome="(\w+)">\w+</td>\s*<td data-label="Endpoint">([^<]*)</td>\s*'
                       r'<td data-label="HTTP">([^<]*)</td>', table)
    return [tuple(f) for f in found]


async def test_a_dead_letter_explains_itself_and_keeps_its_history_once_delivered(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake = fake_iterable[0]
    fake.disallowed_event_names = {"Beta Opened"}
    await send(daemon, [{"type": "track", "userId": "h1", "event": "Beta Opened", "messageId": "h-dead"}])
    row_id = await settled(daemon, "h-dead", Status.DEAD)
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/rows/{row_id}") as response:
            page = await response.text()
        assert 'disallowedEventNames (event &#34;Beta Opened&#34;)' in page  # the reason names the refused event
        assert history_of(page) == [("dead", "events/trackBulk", "200")]  # the endpoint actually called
        assert "disallowedEventNames named this item" in page and "&#34;failCount&#34;: 1" in page
        fake.disallowed_event_names = set()
        async with http.post(f"{base(daemon)}/console/retry",
                             data={"csrf": csrf, "status": "dead", "id": str(row_id), "confirm": "1"}) as response:
            assert "Requeued 1 row as pending." in await response.text()
        await settled(daemon, "h-dead", Status.DELIVERED)
        async with http.get(f"{base(daemon)}/console/rows/{row_id}") as response:
            page = await response.text()
    assert history_of(page) == [("dead", "events/trackBulk", "200"), ("requeued", "", ""),
                                ("delivered", "events/trackBulk", "200")]
    assert 'id="delivered-at"' in page and "sent again as recorded" in page


async def test_retrying_rejected_and_skipped_rows_decides_them_again(daemon: Daemon) -> None:
    await send(daemon, [
        {"userId": "r1", "event": "No Type", "messageId": "r-untyped"},  # rejected: no type
        {"type": "track", "userId": "r1", "event": "Order Completed", "messageId": "r-total"},  # rejected: no total
        {"type": "group", "userId": "r1", "groupId": "g", "messageId": "r-group"},  # skipped
    ])
    untyped = await settled(daemon, "r-untyped", Status.REJECTED)
    total = await settled(daemon, "r-total", Status.REJECTED)
    group = await settled(daemon, "r-group", Status.SKIPPED)
    http, csrf = await logged_in(daemon)
    async with http:
        form: dict[str, Any] = {"csrf": csrf, "status": "rejected", "all": "1"}
        async with http.post(f"{base(daemon)}/console/retry", data=form) as response:
            confirm = await response.text()
        assert "This is a re-decision" in confirm and "requeue <strong>2</strong> rows" in confirm
        async with http.post(f"{base(daemon)}/console/retry", data={**form, "confirm": "1"}) as response:
            assert "Decided 2 rows again under the current mapping." in await response.text()
        async with http.post(f"{base(daemon)}/console/retry", data={"csrf": csrf, "status": "skipped",
                                                                    "id": str(group), "confirm": "1"}) as response:
            assert "Decided 1 row again under the current mapping." in await response.text()
        async with http.get(f"{base(daemon)}/console/rows/{total}") as response:
            page = await response.text()
    assert "decided again under mapping" in page and "was rejected" in page
    for key, status, reason in (("r-untyped", Status.REJECTED, "type"), ("r-total", Status.REJECTED, "total"),
                                ("r-group", Status.SKIPPED, "group is not supported")):
        row = await daemon.ledger.get(Direction.OUTBOUND, key)
        assert row is not None and row.status is status, (key, row)
        assert reason in (row.reason or "") and "KeyError" not in (row.reason or ""), row.reason
    assert untyped


async def test_rows_are_found_by_event_name_message_id_and_person(daemon: Daemon) -> None:
    await send(daemon, [
        {"type": "track", "userId": "f1", "event": "Order Completed", "messageId": "f-a"},
        {"type": "track", "userId": "f2", "event": "Order Completed", "messageId": "f-b"},
    ])
    for key in ("f-a", "f-b"):
        await settled(daemon, key, Status.REJECTED)
    http, _ = await logged_in(daemon)
    async with http:
        async def listed(**query: str) -> set[str]:
            async with http.get(f"{base(daemon)}/console/rows", params={"status": "rejected", **query}) as reply:
                assert reply.status == 200
                page = await reply.text()
            return {m for m in re.findall(r'href="/console/rows/(\d+)"', page)}
        ids = {k: str((await daemon.ledger.get(Direction.OUTBOUND, k)).id) for k in ("f-a", "f-b")}  # type: ignore[union-attr]
        assert await listed(name="Order Completed") == {ids["f-a"], ids["f-b"]}
        assert await listed(kind="Order Completed") == set()  # the type filter is the type
        assert await listed(message_id="f-b") == {ids["f-b"]}
        assert await listed(person="f1") == {ids["f-a"]}
        async with http.get(f"{base(daemon)}/console/rows", params={"status": "rejected"}) as reply:
            page = await reply.text()
        assert 'href="/console/person?key=u%3Af2">f2</a>' in page and "<strong id=\"matching\">2</strong> rows match" in page


async def test_malformed_inputs_get_a_400_or_a_redirect_never_a_500(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    async with http:
        for path, params in (("/console/rows", {"after": "garbage"}),
                             ("/console/rows", {"after": "0001-01-01T00:00:00+05:00|1"}),
                             ("/console/rows", {"after": "2026-01-01T00:00:00|" + "9" * 5000}),
                             ("/console/rows", {"since": "0001-01-01T00:00:00+05:00"}),
                             ("/console/rows", {"until": "9999-12-31T23:59:59-05:00"}),
                             ("/console/person", {"q": "x", "after": "9" * 5000}),
                             ("/console/rows/" + "9" * 5000, {})):
            async with http.get(f"{base(daemon)}{path}", params=params, allow_redirects=False) as reply:
                assert reply.status in (200, 303, 400, 404), (path, params, reply.status)
    cookie = {"sync_console": "9" * 5000 + ".00.00"}
    async with aiohttp.ClientSession(cookies=cookie) as anon, anon.get(
            f"{base(daemon)}/console", allow_redirects=False) as reply:
        assert reply.status == 303


async def test_login_failures_are_budgeted_per_client_address(daemon: Daemon) -> None:
    from sync.http.console.views import CONSOLE
    console = daemon.app[CONSOLE]  # type: ignore[attr-defined]
    console.logins.limit = 3
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            async with http.post(f"{base(daemon)}/console/login", data={"token": "guess"},
                                 allow_redirects=False) as reply:
                statuses.append(reply.status)
        async with http.post(f"{base(daemon)}/console/login", data={"token": "console-token-for-tests-0123456789"},
                             allow_redirects=False) as reply:
            assert reply.status == 429 and "Too many failed logins" in await reply.text()
    assert statuses == [401, 401, 401, 429]


async def test_failures_are_grouped_with_counts_a_sample_and_a_group_retry(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake = fake_iterable[0]
    fake.disallowed_event_names = {"Beta Opened", "Gamma Opened"}
    await send(daemon, [{"type": "track", "userId": f"g{n}", "event": "Beta Opened", "messageId": f"g-beta-{n}"}
                        for n in range(3)] + [{"type": "track", "userId": "g9", "event": "Gamma Opened",
                                               "messageId": "g-gamma"}])
    for key in ("g-beta-0", "g-beta-1", "g-beta-2", "g-gamma"):
        await settled(daemon, key, Status.DEAD)
    http, csrf = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/groups", params={"status": "dead"}) as reply:
            page = await reply.text()
        beta = page.split('data-group="outbound|disallowed event name|Beta Opened"', 1)[1].split("</tr>", 1)[0]
        assert re.findall(r'data-label="(?:1 h|24 h|All)"[^>]*>(\d+)<', beta) == ["3", "3", "3"]
        assert 'href="/console/rows/' in beta and "Retry 3 rows" in beta
        async with http.get(f"{base(daemon)}/console/rows", params={
                "status": "dead", "direction": "outbound", "class": "disallowed event name",
                "name": "Beta Opened"}) as reply:
            assert '<strong id="matching">3</strong> rows match' in await reply.text()  # the group opened
        fake.disallowed_event_names = {"Gamma Opened"}
        form = {"csrf": csrf, "all": "1", "status": "dead", "direction": "outbound",
                "class": "disallowed event name", "name": "Beta Opened"}
        async with http.post(f"{base(daemon)}/console/retry", data=form) as reply:
            assert "requeue <strong>3</strong> rows" in await reply.text()
        async with http.post(f"{base(daemon)}/console/retry", data={**form, "confirm": "1"}) as reply:
            assert "Requeued 3 rows as pending." in await reply.text()
    for n in range(3):
        await settled(daemon, f"g-beta-{n}", Status.DELIVERED)
    gamma = await daemon.ledger.get(Direction.OUTBOUND, "g-gamma")
    assert gamma is not None and gamma.status is Status.DEAD  # another group: untouched


async def test_the_overview_shows_trends_latency_and_metrics_export_them(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake_iterable[0].disallowed_event_names = {"Beta Opened"}
    await send(daemon, [{"type": "track", "userId": "o1", "event": "Song Played", "messageId": "o-ok"},
                        {"type": "track", "userId": "o2", "event": "Beta Opened", "messageId": "o-dead"}])
    await settled(daemon, "o-ok", Status.DELIVERED)
    await settled(daemon, "o-dead", Status.DEAD)
    http, _ = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/overview") as reply:
            page = await reply.text()
        async with http.get(f"{base(daemon)}/metrics") as reply:
            metrics = await reply.text()
    for counted in ('data-count="outbound-delivered">1<', 'data-count="outbound-dead">1<',
                    'data-hour="outbound-dead">1<', 'data-count="inbound-delivered">0<'):
        assert counted in page
    assert re.search(r'data-latency="outbound-p95">p95 <strong>\d+ ms</strong>', page), page
    assert re.search(r'data-last-delivery="outbound">\d+ s ago<', page)
    assert 'data-latency="inbound-p50">p50 <strong>none</strong>' in page
    assert re.search(r'<rect class="bad" x="235" y="2.0" width="4" height="58.0"><title>1 dead', page)
    assert 'sync_delivery_latency_seconds_count{direction="outbound"} 1.0' in metrics
    assert ('sync_delivery_failures_total{direction="outbound",event="Beta Opened",'
            'reason_class="disallowed event name"} 1.0') in metrics


async def test_the_live_tail_shows_an_event_as_it_arrives(daemon: Daemon) -> None:
    http, _ = await logged_in(daemon)
    async with http:
        async with http.get(f"{base(daemon)}/console/tail", params={"name": "Tail Me"}) as reply:
            assert "Nothing received with that name" in await reply.text()
        await send(daemon, [{"type": "track", "userId": "t1", "event": "Tail Me", "messageId": "t-1"},
                            {"type": "track", "userId": "t1", "event": "Other", "messageId": "t-2"}])
        async with http.get(f"{base(daemon)}/console/tail/part", params={"name": "Tail Me"}) as reply:
            page = await reply.text()
    assert page.count("data-row=") == 1 and "Tail Me" in page and 'href="/console/person?key=u%3At1"' in page
