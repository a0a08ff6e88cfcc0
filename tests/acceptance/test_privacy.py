"""People's data as an operator meets it (issue 22): the real ``serve`` process, ``forget`` and ``ledger list``
from the command line, and the daemon's own log."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp

from sync.sandbox import FakeIterable, Fault
from tests.acceptance.test_commands import cli
from tests.processes import free_port
from tests.support import WRITE_KEY, daemon_config, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def batch(url: str, events: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/v1/batch", json={"batch": events}, headers=BASIC) as response:
        assert response.status == 200, await response.text()


async def test_forget_reaches_the_held_visit_and_no_log_line_names_anybody(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    fake.faults.add(Fault(endpoint="users/bulkUpdate", status=400, body={
        "msg": "Invalid email: Dead.Letter@Example.com", "code": "InvalidEmailAddressError"}))
    port = free_port()
    text = daemon_config(port, f"sqlite:///{tmp_path}/people.db", iterable_url, "http://127.0.0.1:9")
    serve = spawn(text, port=port)
    await serve.ready()
    await batch(serve.url, [{"type": "identify", "userId": "dl-1", "messageId": "dl-1",
                             "traits": {"email": "dead.letter@example.com"}}])
    await wait_for(lambda: "dead-lettered" in serve.output(), within=20)
    await batch(serve.url, [{"type": "page", "anonymousId": "anon-acc", "name": "Pricing", "messageId": "ac-1",
                             "context": {"ip": "198.51.100.23"}}])
    await batch(serve.url, [{"type": "identify", "userId": "acc-9", "anonymousId": "anon-acc", "messageId": "ac-2",
                             "traits": {"email": "acc9@example.com"}}])
    await wait_for(lambda: "ac-1" in fake.events, within=20)
    config = str(tmp_path / "config.toml")
    code, out, err = await cli("forget", "--user-id", "acc-9", "--config", config)
    assert code == 0 and out.startswith("forgot 3 rows"), out + err
    code, listed, _ = await cli("ledger", "list", "--status", "skipped", "--json", "--config", config)
    assert [r["key"] for r in json.loads(listed)] == ["ac-1"]  # the held visit, released then forgotten
    assert json.loads(listed)[0]["forgotten"] is True
    for personal in ("acc-9", "acc9@example.com", "anon-acc", "198.51.100.23"):
        assert personal not in listed, personal
    assert await serve.stop() == 0
    log = serve.output()
    assert "Invalid email: [email]" in log and "dead.letter@example.com" not in log.lower()
