"""The mapping is decided once, at intake (issue 11, B5): the real ``serve`` process, a config change
between two runs with rows pending, and ``ledger retry --remap``."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from sync.sandbox import FakeIterable, Fault
from tests.processes import ROOT, free_port, http_json
from tests.support import WRITE_KEY, daemon_config, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
BEFORE = '[outbound.filter]\ndeny = ["Internal *"]\n'
AFTER = '[outbound.events]\n"Signed Up" = { name = "signup" }\n'


async def send(url: str, events: list[dict[str, Any]]) -> None:
    status, _ = await http_json("POST", f"{url}/v1/batch", headers=BASIC, json={"batch": events})
    assert status == 200


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "sync", *args, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_rows_go_out_as_recorded_after_a_config_change_and_remap_changes_them(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, iterable_url = fake_iterable
    fake.faults.add(Fault(endpoint="*", status=503, times=100_000))  # Iterable down: rows stay pending
    port = free_port()
    ledger = f"sqlite:///{tmp_path}/mapping.db"

    def config(mapping: str) -> str:
        return daemon_config(port, ledger, iterable_url, "http://127.0.0.1:9", extra=mapping)

    first = spawn(config(BEFORE), port=port, name="before.toml")
    await first.ready()
    await send(first.url, [
        {"type": "track", "userId": "m1", "event": "Signed Up", "messageId": "recorded-1"},
        {"type": "track", "userId": "m2", "event": "Internal Ping", "messageId": "internal-1"},
    ])
    assert await first.stop() == 0

    fake.faults.clear()
    second = spawn(config(AFTER), port=port, name="after.toml")
    await second.ready()
    await wait_for(lambda: "recorded-1" in fake.events, within=20)
    assert fake.events["recorded-1"]["eventName"] == "Signed Up"  # as decided when it arrived
    await send(second.url, [{"type": "track", "userId": "m1", "event": "Signed Up", "messageId": "new-1"},
                            {"type": "track", "userId": "m1", "event": "Signed Up", "messageId": "recorded-1"}])
    await wait_for(lambda: "new-1" in fake.events, within=20)
    assert fake.events["new-1"]["eventName"] == "signup"  # the new config decides new events
    assert "internal-1" not in fake.events  # skipped under the old config, and a config change does not re-send
    async with aiohttp.ClientSession() as session, session.get(f"{second.url}/metrics") as reply:
        status, metrics = reply.status, await reply.text()
    assert status == 200 and metrics.count("sync_mapping_info{") == 1

    code, out, err = await cli("ledger", "retry", "--remap", "--status", "skipped", "--config",
                               str(tmp_path / "after.toml"))
    assert (code, err) == (0, "") and out.startswith("re-mapped 1 rows under mapping") and "1 pending" in out
    await wait_for(lambda: "internal-1" in fake.events, within=20)
    assert fake.events["internal-1"]["eventName"] == "Internal Ping"
    assert await second.stop() == 0
    log = second.output()
    assert "mapping digest" in log and "(was none)" not in log  # the second run names the digest before it
    assert len([e for e in fake.event_log if e["id"] == "recorded-1"]) == 1  # the duplicate stayed one
    assert len([e for e in fake.event_log if e["id"] == "internal-1"]) == 1


async def test_remap_refuses_to_reroute_a_row_whose_last_try_had_no_answer(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    """A timeout may have been applied by Iterable: re-routing it elsewhere could make a second record."""
    from datetime import UTC, datetime

    from sync.ledger import migrate
    from sync.ledger.store import Ledger, create_engine
    from sync.model import Claim, Direction, Settlement

    fake, iterable_url = fake_iterable
    port = free_port()
    ledger_url = f"sqlite:///{tmp_path}/remap.db"
    path = tmp_path / "remap.toml"
    text = daemon_config(port, ledger_url, iterable_url, "http://127.0.0.1:9")
    path.write_text(text)
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    store = Ledger(engine)
    from sync.config import load
    from sync.engine.intake import outbound_options, outbound_rows

    rows, _ = outbound_rows([{"type": "track", "userId": "r", "event": "Checkout Completed", "messageId": "co-1",
                              "properties": {"revenue": 5}}], outbound_options(load(path)))
    now = datetime.now(UTC)
    await store.record(rows, now)
    (row,) = await store.claim(Claim(direction=Direction.OUTBOUND, owner="t", limit=1, lease_seconds=5), now)
    await store.settle(Settlement(dead=((row.id, "gave up after 9 attempts: events/trackBulk: TimeoutError"),)),
                       now, owner="t")
    await engine.dispose()
    path.write_text(text + '[outbound.events]\n"Checkout Completed" = { call = "purchase", properties = '
                           '{ rename = { revenue = "total" } } }\n')
    code, _, err = await cli("ledger", "retry", "--remap", "--status", "dead", "--config", str(path))
    assert code == 1 and "may have applied it" in err and "--force" in err
    code, out, _ = await cli("ledger", "retry", "--remap", "--status", "dead", "--force", "--config", str(path))
    assert code == 0 and "1 pending" in out
    serve = spawn(path.read_text(), port=port, name="remap-serve.toml")
    await serve.ready()
    await wait_for(lambda: bool(fake.purchases), within=20)
    assert await serve.stop() == 0


SHAPING = '''[outbound.properties]
allow = ["a", "holder", "zzz", "k", "address.*", "x", "y"]
deny = ["card_*", "address.street"]
rename = { holder = "card_holder", x = "y", y = "x" }
[outbound.events]
"Signed Up" = { properties = { allow = ["b", "holder", "zz*", "k", "address.*", "x", "y"], deny = ["zzz"] } }
[outbound.pages]
event_name = "{ name }"
'''


async def test_check_config_try_applies_each_events_field_rules_once(tmp_path: Path) -> None:
    """The real command, as an operator debugs a config: the per-event allow replaces the global one, the global
    rules run once, renames swap, a dotted deny removes the nested field, and a stray brace is refused."""
    path = tmp_path / "shaping.toml"
    path.write_text(daemon_config(free_port(), f"sqlite:///{tmp_path}/l.db", "http://127.0.0.1:9",
                                  "http://127.0.0.1:9", extra=SHAPING))
    code, _, err = await cli("check-config", "--config", str(path))
    assert code == 1 and "outbound.pages.event_name: stray '{' at character 1" in err
    path.write_text(path.read_text().replace("{ name }", "{name}"))
    event = tmp_path / "signed_up.json"
    event.write_text(json.dumps({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1",
                                 "properties": {"a": 1, "b": 2, "c": 3, "holder": "Ann", "zzz": 1, "k": 2, "x": 5,
                                                "y": 6, "address": {"street": "Main St 1", "city": "Oslo"}}}))
    code, out, err = await cli("check-config", "--config", str(path), "--try", str(event))
    assert code == 0, err
    body = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert body["dataFields"] == {"b": 2, "card_holder": "Ann", "k": 2, "x": 6, "y": 5,
                                  "address": {"city": "Oslo"}}
