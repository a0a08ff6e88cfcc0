"""SPEC section 15 against the fakes, on both ledgers: the field-type guard and the webhook drift check."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon
from sync.config import Config
from sync.model import Direction, Status
from sync.sandbox import FakeIterable
from tests.conftest import started
from tests.support import ITERABLE_KEY, WRITE_KEY, wait_for

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
OUT = Direction.OUTBOUND


async def post(daemon: Daemon, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{daemon.address[1]}{path}", json=body, headers=BASIC) as response:
        return response.status, await response.json(content_type=None)


async def get(daemon: Daemon, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{daemon.address[1]}{path}") as response:
        return response.status, await response.text()


async def other_writer(fake_url: str, endpoint: str, body: dict[str, Any]) -> None:
    """Another Iterable client (a CSV import, another integration) writes first and fixes the types."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{fake_url}/api/{endpoint}", json=body, headers={"Api-Key": ITERABLE_KEY}) as response:
        assert response.status == 200, await response.text()


def identify(message_id: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": "u1", "messageId": message_id, "traits": {"email": "ann@example.com",
                                                                                     **traits}}


async def status(daemon: Daemon, key: str) -> Status | None:
    row = await daemon.ledger.get(OUT, key)
    return row.status if row else None


async def test_a_value_of_another_type_than_iterables_field_is_refused_at_intake_with_its_reason(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, fake_url = fake_iterable
    await other_writer(fake_url, "users/update", {"userId": "someone", "dataFields": {"age": 41,
                                                                                        "address": {"zip": "75001"}}})
    assert daemon.guards is not None
    assert await daemon.guards.refresh_types() >= 3  # age, address, address.zip
    code, body = await post(daemon, "/v1/batch", {"batch": [identify("ok-1", age=42), identify("bad-1", age="42"),
                                                             identify("bad-2", address={"zip": 75002})]})
    assert code == 200
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert set(errors) == {1, 2}
    assert "dataFields.age" in errors[1] and "as long" in errors[1] and "is string" in errors[1]
    assert "dataFields.address.zip" in errors[2] and "as string" in errors[2] and "is long" in errors[2]
    row = await daemon.ledger.get(OUT, "bad-1")
    assert row is not None and row.status is Status.REJECTED and "dataFields.age" in (row.reason or "")
    code, single = await post(daemon, "/v1/identify", identify("bad-3", age=True))
    assert code == 400 and "boolean" in single["error"]
    await wait_for(lambda: status(daemon, "ok-1"), within=10)
    await wait_for(lambda: fake.find_user(user_id="u1") is not None, within=10)
    assert fake.find_user(user_id="u1")["dataFields"]["age"] == 42  # type: ignore[index]
    sent = json.dumps([body for _, body in fake.requests])
    assert '"42"' not in sent and "75002" not in sent  # the refused values never reached Iterable


async def test_iterables_refusal_names_the_field_so_the_next_value_is_refused_at_intake(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """Event fields are in no getFields answer: Iterable's refusal (RequestFieldsTypesMismatched, naming the field
    and its type) is where the daemon learns them; a field its own accepted write created is learned too."""
    fake, fake_url = fake_iterable
    await other_writer(fake_url, "events/track", {"userId": "other", "eventName": "Video Played",
                                                  "dataFields": {"seconds": 12}})
    video = {"type": "track", "userId": "u1", "event": "Video Played"}
    code, _ = await post(daemon, "/v1/batch", {"batch": [{**video, "messageId": "v1", "properties": {"seconds": "x"}},
                                                         {**video, "messageId": "v2", "properties": {"seconds": 3}}]})
    assert code == 200
    await wait_for(lambda: _is(daemon, "v1", Status.DEAD), within=10)  # the request refused, v1 found alone
    await wait_for(lambda: _is(daemon, "v2", Status.DELIVERED), within=10)
    v1 = await daemon.ledger.get(OUT, "v1")
    assert v1 is not None and "RequestFieldsTypesMismatched" in (v1.reason or "")
    assert daemon.guards is not None
    assert daemon.guards.types.events["Video Played"]["seconds"] == "long"
    code, body = await post(daemon, "/v1/batch", {"batch": [{**video, "messageId": "v3", "properties": {"seconds": "y"}}]})
    assert "dataFields.seconds: Iterable has this event 'Video Played' field as long" in body["rejected"][0]["error"]
    code, _ = await post(daemon, "/v1/batch", {"batch": [identify("p1", plan="pro")]})
    await wait_for(lambda: _is(daemon, "p1", Status.DELIVERED), within=10)
    assert daemon.guards.types.user.get("plan") == "string"  # createdFields: this write fixed its type
    assert "dataFields.plan" in (await post(daemon, "/v1/batch", {"batch": [identify("p2", plan=3)]}))[1][
        "rejected"][0]["error"]


async def _is(daemon: Daemon, key: str, wanted: Status) -> bool:
    return await status(daemon, key) is wanted


@pytest.fixture
async def unguarded(stack_config: Config, ledger_url: str) -> AsyncIterator[Daemon]:
    config = replace(stack_config, outbound=replace(stack_config.outbound, type_guard="off"))
    async with started(config, ledger_url) as running_daemon:
        yield running_daemon


async def test_with_the_guard_off_the_value_goes_to_iterable_as_is(
        unguarded: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, fake_url = fake_iterable
    await other_writer(fake_url, "users/update", {"userId": "other", "dataFields": {"age": 41}})
    assert unguarded.guards is not None
    await unguarded.guards.refresh_types()
    code, body = await post(unguarded, "/v1/batch", {"batch": [identify("as-is", age="42")]})
    assert code == 200 and "rejected" not in body
    await wait_for(lambda: _is(unguarded, "as-is", Status.DEAD), within=10)
    row = await unguarded.ledger.get(OUT, "as-is")
    assert row is not None and "RequestFieldsTypesMismatched" in (row.last_error or row.reason or "")


PUBLIC = "https://sync.example.com"


@pytest.fixture
async def watching(stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str],
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    """The daemon with ``server.public_url`` set, its webhook already set up in Iterable as it should be."""
    monkeypatch.setattr("sync.app.FIRST_RUN_SECONDS", 0.2)  # the hourly jobs' first run, soon
    fake_iterable[0].add_webhook(f"{PUBLIC}/iterable/webhook?campaign={{{{campaignId}}}}")
    config = replace(stack_config, server=replace(stack_config.server, public_url=PUBLIC))
    async with started(config, ledger_url) as running_daemon:
        yield running_daemon


async def webhook_view(daemon: Daemon) -> tuple[dict[str, Any], str]:
    code, text = await get(daemon, "/readyz")
    assert code == 200  # drift is shown, not judged by: the daemon still takes events
    return json.loads(text)["webhook"], (await get(daemon, "/metrics"))[1]


async def test_a_drifted_webhook_shows_on_readyz_and_the_metric(
        watching: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    guards = watching.guards
    assert guards is not None
    await wait_for(lambda: guards.webhook is not None, within=10)  # the hourly job's first run, after start
    detail, metrics = await webhook_view(watching)
    assert detail["ok"] is True and detail["problems"] == [] and detail["webhook_id"] == 1000
    assert "sync_iterable_webhook_ok 1.0" in metrics
    fake.webhooks[0].update(enabled=False, authType="NoAuth", blastSendEnabled=False)  # edited in Iterable's UI
    await guards.check_webhook()
    detail, metrics = await webhook_view(watching)
    assert detail["ok"] is False and "sync_iterable_webhook_ok 0.0" in metrics
    problems = " | ".join(detail["problems"])
    assert "disabled" in problems and "NoAuth" in problems and "blastSendEnabled" in problems
    fake.webhooks[0]["endpoint"] = "https://old-host.example.com/iterable/webhook"
    await guards.check_webhook()
    detail, _ = await webhook_view(watching)
    assert detail["problems"] == [f"no system webhook points at {PUBLIC}/iterable/webhook (the project's 1 "
                                  "webhook(s) point at old-host.example.com)"]


async def test_check_config_reports_a_drifted_webhook(tmp_path: Any, fake_iterable: tuple[FakeIterable, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from sync import cli
    from sync.config import load
    from tests.support import daemon_config

    fake, fake_url = fake_iterable
    path = tmp_path / "sync.toml"
    path.write_text(daemon_config(8787, f"sqlite:///{tmp_path}/ledger.db", fake_url, "http://127.0.0.1:9").replace(
        "[server]\n", f'[server]\npublic_url = "{PUBLIC}/"\n'))
    args = cli.parser().parse_args(["check-config", "--config", str(path)])

    fake.add_webhook(f"{PUBLIC}/iterable/webhook", enabled=False)
    assert await cli._check(load(str(path)), args) == 1
    out = capsys.readouterr().out
    assert "is valid" in out and "webhook 1000: DRIFTED" in out and "disabled" in out
    fake.webhooks[0]["enabled"] = True
    assert await cli._check(load(str(path)), args) == 0
    out = capsys.readouterr().out
    assert "webhook 1000: OK" in out
    assert "event types" in out  # what Iterable's API cannot show is said, not guessed
    fake.webhooks.clear()
    fake.api_key = "another-key"  # Iterable cannot be asked: said, and exit 1
    assert await cli._check(load(str(path)), args) == 1
    assert "cannot read Iterable's webhooks" in capsys.readouterr().out
