"""Operator commands as an operator runs them: output, --json and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.app import Daemon
from sync.config import Config
from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.model import Claim, Direction, NewEvent, Settlement, Status
from sync.sandbox import FakeIterable, FakeSegment, Fault
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.processes import ROOT
from tests.support import ITERABLE_KEY, WEBHOOK_TOKEN, daemon_config, wait_for


def write_config(tmp_path: Path, ledger_url: str, iterable_url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "ops.toml"
    path.write_text(daemon_config(8787, ledger_url, iterable_url, "http://127.0.0.1:9",
                                  extra='[iterable.rate_limits]\n"export/data.json" = 100\n'))
    return path


async def cli(*args: str, interrupt_when: Callable[[], bool] | None = None) -> tuple[int, str, str]:
    """Run ``python -m sync ARGS``; output goes through files so nothing is lost on a timeout.

    ``interrupt_when``: send SIGINT once it holds (checked every 20 ms)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sync", *args, cwd=ROOT, stdout=out, stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"})
        if interrupt_when is not None:
            await wait_for(interrupt_when, within=60, interval=0.02)
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.send_signal(signal.SIGABRT)
            await process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode is not None and process.returncode < 0:
        raise AssertionError(f"`sync {' '.join(args)}` did not finish:\n{stderr}")
    return process.returncode or 0, stdout, stderr


async def seeded(ledger: Ledger) -> None:
    t0 = datetime.now(UTC) - timedelta(days=40)
    await ledger.record([NewEvent(direction=Direction.OUTBOUND, key=f"k{n}", kind="track", payload={"n": n},
                                  user_key=f"u{n}") for n in range(4)], t0)
    await ledger.record([NewEvent(direction=Direction.OUTBOUND, key="skip", kind="group", payload={},
                                  status=Status.SKIPPED, reason="group is not supported by Iterable")], t0)
    rows = await ledger.claim(Claim(direction=Direction.OUTBOUND, owner="t", limit=3, lease_seconds=5), t0)
    await ledger.settle(Settlement(delivered=(rows[0].id,), dead=((rows[1].id, "HTTP 400 BadParams: nope"),
                                                                  (rows[2].id, "HTTP 409 conflict"))), t0, owner="t")
    await ledger.pause(Direction.INBOUND, "Segment answered HTTP 401", t0)


@pytest.fixture
async def ops_config(tmp_path: Path, ledger: Ledger, ledger_url: str) -> Path:
    await seeded(ledger)
    return write_config(tmp_path, ledger_url)


async def test_ledger_stats_table_and_json(ops_config: Path) -> None:
    code, out, _ = await cli("ledger", "stats", "--config", str(ops_config))
    assert code == 0
    assert out.splitlines()[1].split()[:6] == ["outbound", "1", "1", "2", "1", "0"]
    assert "PAUSED inbound: Segment answered HTTP 401" in out
    code, out, _ = await cli("ledger", "stats", "--json", "--config", str(ops_config))
    stats = json.loads(out)
    assert stats["counts"]["outbound"] == {"pending": 1, "delivered": 1, "dead": 2, "skipped": 1, "rejected": 0,
                                           "held": 0}
    assert stats["oldest_pending_seconds"]["outbound"] > 39 * 86400
    assert stats["paused"] == {"inbound": "Segment answered HTTP 401"}


async def test_ledger_list_retry_and_purge(ops_config: Path, ledger: Ledger) -> None:
    code, out, _ = await cli("ledger", "list", "--status", "dead", "--config", str(ops_config))
    assert code == 0 and "HTTP 400 BadParams: nope" in out and "(2 rows)" in out
    code, out, _ = await cli("ledger", "list", "--status", "skipped", "--json", "--config", str(ops_config))
    assert [(r["key"], r["reason"]) for r in json.loads(out)] == [("skip", "group is not supported by Iterable")]
    dead = await ledger.rows(status=Status.DEAD)
    code, out, _ = await cli("ledger", "retry", "--id", str(dead[0].id), "--config", str(ops_config))
    assert (code, out.strip()) == (0, "requeued 1 rows as pending")
    # ids a retry does not take say why (it printed "requeued 0 rows" and exited 0)
    delivered = (await ledger.rows(status=Status.DELIVERED))[0].id
    code, out, err = await cli("ledger", "retry", "--id", str(dead[0].id), str(delivered), "999999", "--config",
                               str(ops_config))
    assert (code, out.strip()) == (1, "requeued 0 rows as pending")
    why = {dead[0].id: "pending; only dead, rejected and skipped rows are requeued",
           delivered: "delivered; only dead, rejected and skipped rows are requeued",
           999999: "not in the ledger (purged, or never recorded)"}
    assert err.splitlines() == [f"not requeued: #{row_id}: {why[row_id]}" for row_id in sorted(why)]  # in id order
    code, out, _ = await cli("ledger", "retry", "--status", "dead", "--direction", "outbound", "--config",
                             str(ops_config))
    assert (code, out.strip()) == (0, "requeued 1 rows as pending")
    assert (await ledger.stats()).counts[("outbound", "pending")] == 3
    code, out, _ = await cli("ledger", "purge", "--older-than", "30d", "--config", str(ops_config))
    assert code == 0 and out.startswith("purged 2 terminal rows older than 30d")  # the delivered and the skipped row
    # under ledger.retention_days (7 by default) a purge would let a client's retry of those events through
    code, _, err = await cli("ledger", "purge", "--older-than", "0d", "--config", str(ops_config))
    assert code == 2 and "--older-than 0d is under ledger.retention_days (7d)" in err and "--below-retention" in err
    code, _, err = await cli("ledger", "purge", "--older-than", "90m", "--config", str(ops_config))  # as typed
    assert code == 2 and "--older-than 90m is under" in err
    code, out, _ = await cli("ledger", "purge", "--older-than", "6d", "--below-retention", "--config", str(ops_config))
    assert code == 0 and out.startswith("purged 0 terminal rows older than 6d")
    code, _, err = await cli("ledger", "purge", "--older-than", "soon", "--config", str(ops_config))
    assert code == 2 and "expected a number and d, h or m" in err
    code, _, err = await cli("ledger", "list", "--status", "lost", "--config", str(ops_config))
    assert code == 2


async def test_ledger_commands_name_an_unmigrated_or_unreachable_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/empty.db")
    code, _, err = await cli("ledger", "stats", "--config", str(config))
    assert code == 1 and "migrate" in err
    config = write_config(tmp_path, "postgresql://postgres@127.0.0.1:1/none")
    code, _, err = await cli("ledger", "stats", "--config", str(config))
    assert code == 1 and "ledger unreachable" in err


def export_record(n: int, created: datetime) -> dict[str, Any]:
    return {"email": f"r{n}@example.com", "createdAt": created.strftime("%Y-%m-%d %H:%M:%S +00:00"),
            "campaignId": 7, "templateId": 8, "messageId": f"msg{n}", "itblInternal": {"documentCreatedAt": "x"}}


async def test_backfill_records_the_window_and_dedupes_against_webhooks(
        tmp_path: Path, daemon: Daemon, stack_config: Config, fake_iterable: tuple[FakeIterable, str],
        fake_segment: tuple[FakeSegment, str]) -> None:
    """Runs next to a serving daemon on the same ledger; what the webhook brought is a duplicate."""
    import aiohttp

    fake, url = fake_iterable
    fake.enforce_rate_limits = False  # its 4/minute is Iterable's; the config above allows more
    webhook = ITERABLE_WEBHOOKS[1]  # emailOpen, 2016-12-02 18:51:45
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{daemon.address[1]}/iterable/webhook", json=webhook,
            headers={"Authorization": WEBHOOK_TOKEN}) as response:
        assert response.status == 200
    start = datetime(2016, 12, 1, tzinfo=UTC)
    fake.export_records["emailOpen"] = [{**webhook["dataFields"], "email": webhook["email"]}]
    fake.export_records["emailOpen"] += [export_record(n, start + timedelta(hours=n * 7)) for n in range(10)]
    fake.export_records["pushSend"] = [export_record(99, start + timedelta(hours=1))]
    config = write_config(tmp_path, stack_config.ledger.url, url)
    code, out, err = await cli("backfill", "--config", str(config), "--since", "2016-12-01", "--until",
                               "2016-12-04T00:00:00Z", "--types", "emailOpen,pushSend")
    assert code == 0, err
    assert out.strip() == "backfill done: 6 windows, fetched 12, new 11, duplicates 1, invalid 0"
    assert "[3/6] emailOpen window done; all types so far: fetched 11, new 10, duplicates 1, invalid 0" in err
    assert sum(1 for endpoint, _ in fake.hits if endpoint == "export/data.json") == 6
    segment = fake_segment[0]
    await wait_for(lambda: len(segment.unique()) == 12)  # the serving daemon delivers what backfill recorded
    assert len(segment.messages) == 12
    code, out, _ = await cli("backfill", "--config", str(config), "--since", "2016-12-01", "--until",
                             "2016-12-04T00:00:00Z", "--types", "emailOpen,pushSend")
    assert out.strip() == "backfill done: 6 windows, fetched 0, new 0, duplicates 0, invalid 0"  # resumed: all done
    code, out, _ = await cli("backfill", "--config", str(config), "--since", "2016-12-01", "--until",
                             "2016-12-04T00:00:00Z", "--types", "emailOpen,pushSend", "--restart")
    assert out.strip() == "backfill done: 6 windows, fetched 12, new 0, duplicates 12, invalid 0"


async def test_an_interrupted_backfill_resumes_where_it_stopped(
        tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, url = fake_iterable
    fake.enforce_rate_limits = False
    start = datetime(2020, 1, 1, tzinfo=UTC)
    fake.export_records["emailSend"] = [export_record(n, start + timedelta(hours=n * 12)) for n in range(8)]
    fake.faults.add(Fault(endpoint="data.json", mode="slow", delay=0, times=2),
                    Fault(endpoint="data.json", mode="hang", times=1))
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/l.db", url)
    args = ("backfill", "--config", str(config), "--since", "2020-01-01", "--until", "2020-01-05",
            "--types", "emailSend")
    def exports() -> int:
        return sum(1 for endpoint, _ in fake.hits if endpoint == "export/data.json")

    code, _, err = await cli(*args, interrupt_when=lambda: exports() >= 3)  # the third window's request hangs
    assert code == 1 and "run the same command again to resume" in err and "[2/4]" in err
    hits = exports()
    code, out, err = await cli(*args)
    assert code == 0 and out.strip().startswith("backfill done: 4 windows, fetched 4, new 4")
    assert exports() == hits + 2


async def test_backfill_usage_and_upstream_errors(tmp_path: Path, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, url = fake_iterable
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/l.db", url)
    code, _, err = await cli("backfill", "--config", str(config), "--since", "yesterday")
    assert code == 2 and "ISO-8601" in err
    code, _, err = await cli("backfill", "--config", str(config), "--since", "2020-01-01", "--types", "emailOpne")
    assert code == 2 and "emailOpne" in err
    code, _, err = await cli("backfill", "--config", str(config), "--since", "2020-01-02", "--until", "2020-01-01")
    assert code == 2
    fake.api_key = "rotated"
    code, _, err = await cli("backfill", "--config", str(config), "--since", "2020-01-01", "--until", "2020-01-02")
    assert code == 1 and "refused the API key" in err and ITERABLE_KEY not in err


async def test_migrate_then_ledger_on_postgres_and_sqlite(tmp_path: Path, ledger_url: str) -> None:
    from tests.conftest import _reset_pg

    if ledger_url.startswith("postgresql"):
        await _reset_pg(ledger_url)
    config = write_config(tmp_path, ledger_url)
    code, out, _ = await cli("migrate", "--config", str(config))
    assert code == 0 and f"migrated to {migrate.head_revision()}" in out
    code, out, _ = await cli("ledger", "stats", "--json", "--config", str(config))
    assert code == 0 and json.loads(out)["counts"]["inbound"]["pending"] == 0
    engine = create_engine(ledger_url)
    await migrate.ensure_current(engine)
    await engine.dispose()


async def test_forget_leaves_tombstones_and_upstream_queues_the_deletion(tmp_path: Path) -> None:
    ledger_url = f"sqlite:///{tmp_path}/forget.db"
    config = write_config(tmp_path, ledger_url)
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    ledger = Ledger(engine)
    from sync import people

    t0 = datetime.now(UTC)
    await ledger.record([NewEvent(direction=Direction.OUTBOUND, key=f"f{n}", kind="identify",
                                  payload={"traits": {"email": "forget.me@example.com"}},
                                  identities=people.of("u:fm", "e:forget.me@example.com")) for n in range(3)], t0)
    await engine.dispose()
    code, out, err = await cli("forget", "--email", "forget.me@example.com", "--config", str(config))
    assert code == 0 and out.startswith("forgot 3 rows"), err
    code, out, _ = await cli("ledger", "list", "--status", "skipped", "--json", "--config", str(config))
    listed = json.loads(out)
    assert len(listed) == 3 and all(r["forgotten"] and r["reason"] == "user forgotten" for r in listed)
    assert "forget.me" not in out
    code, out, _ = await cli("forget", "--user-id", "fm", "--upstream", "--config", str(config))
    assert code == 0 and "queued for Iterable" in out
    code, out, _ = await cli("forget", "--email", "not-an-email", "--config", str(config))
    assert code == 2


@pytest.mark.parametrize(("given", "linked", "endpoint"), [
    ("X-U0@Example.com", True, "users/byUserId/x-u0"),  # the userId linked to the email, read before forgetting
    ("solo@Example.com", False, "users/solo@example.com"),  # no userId known: by email, in its normal form
])
async def test_forget_by_email_upstream_deletes_the_person_not_a_user_named_by_their_email(
        tmp_path: Path, given: str, linked: bool, endpoint: str) -> None:
    """`forget --email X --upstream` queued `DELETE /api/users/byUserId/X`: Iterable has no user whose userId
    is an email, answered "does not exist", which counts as done, and the person stayed in Iterable."""
    from sync import people

    ledger_url = f"sqlite:///{tmp_path}/forget.db"
    config = write_config(tmp_path, ledger_url)
    engine = create_engine(ledger_url)
    await migrate.upgrade(engine)
    email = given.lower()
    ids = people.of("u:x-u0", f"e:{email}") if linked else people.of(f"e:{email}")
    payload = {"userId": "x-u0", "traits": {"email": email}} if linked else {"traits": {"email": email}}
    await Ledger(engine).record([NewEvent(direction=Direction.OUTBOUND, key="k1", kind="identify", payload=payload,
                                          user_key=ids[0], identities=ids)], datetime.now(UTC))
    code, out, err = await cli("forget", "--email", given, "--upstream", "--config", str(config))
    assert code == 0 and "queued for Iterable" in out, (out, err)
    deletions = [r for r in await Ledger(engine).rows(direction=Direction.OUTBOUND, status=Status.PENDING, limit=10)
                 if r.kind == "delete"]
    await engine.dispose()
    assert [(r.mapped or {}).get("endpoint") for r in deletions] == [endpoint]


async def test_a_fresh_checkout_migrates_its_sqlite_ledger_and_a_missing_one_is_named(tmp_path: Path) -> None:
    """A fresh-eyes walk: `migrate` with the default SQLite ledger in a folder not made yet failed ("unable to
    open database file", no path); `ledger stats` on a missing file left an empty database behind and said the
    schema "is at nothing"."""
    ledger = tmp_path / "data" / "ledger.db"
    config = write_config(tmp_path, f"sqlite:///{ledger}")
    code, _, err = await cli("ledger", "stats", "--config", str(config))
    assert code == 1 and f"no ledger at {ledger} (ledger.url)" in err and "migrate" in err
    assert not ledger.exists() and not ledger.parent.exists()  # nothing left behind
    code, out, err = await cli("migrate", "--config", str(config))
    assert code == 0 and "ledger migrated to" in out, err
    code, out, _ = await cli("ledger", "stats", "--config", str(config))
    assert code == 0
