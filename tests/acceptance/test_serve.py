"""The real ``python -m sync serve`` process: start, readiness, signals, refusals, logs."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sync.sandbox import FakeIterable, FakeSegment
from sync.sandbox.samples import ITERABLE_WEBHOOKS
from tests.processes import ROOT, free_port, http_json
from tests.support import ITERABLE_KEY, SEGMENT_KEY, WEBHOOK_TOKEN, WRITE_KEY, wait_for

EXAMPLE = (ROOT / "config.example.toml").read_text()


def example_env(tmp_path: Path, port: int, iterable_url: str, segment_url: str, ledger: str = "") -> dict[str, str]:
    return {"ITERABLE_API_KEY": ITERABLE_KEY, "SEGMENT_WRITE_KEY": SEGMENT_KEY, "SYNC_WRITE_KEY": WRITE_KEY,
            "SEGMENT_SHARED_SECRET": "secret-for-tests", "ITERABLE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "SYNC_PORT": str(port), "SYNC_LEDGER_URL": ledger or f"sqlite:///{tmp_path}/ledger.db",
            "ITERABLE_BASE_URL": iterable_url, "SEGMENT_HOST": segment_url}


async def test_example_config_serves_both_directions_and_stops_cleanly(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str],
        fake_segment: tuple[FakeSegment, str]) -> None:
    port = free_port()
    serve = spawn(EXAMPLE, env=example_env(tmp_path, port, fake_iterable[1], fake_segment[1]), port=port,
                  args=("--log-format", "json"))
    await serve.ready()
    assert await http_json("GET", f"{serve.url}/readyz") == (200, {"ready": True, "paused": {}})
    basic = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    status, _ = await http_json("POST", f"{serve.url}/v1/batch", headers=basic, json={"batch": [
        {"type": "identify", "userId": "acc-1", "traits": {"email": "acc@example.com"}},
        {"type": "track", "userId": "acc-1", "event": "Accepted"}]})
    assert status == 200
    status, _ = await http_json("POST", f"{serve.url}/iterable/webhook", headers={"Authorization": WEBHOOK_TOKEN},
                                json=ITERABLE_WEBHOOKS[0])
    assert status == 200
    await wait_for(lambda: len(fake_iterable[0].event_log) == 1 and len(fake_segment[0].messages) == 1)
    assert await serve.stop(signal.SIGTERM) == 0
    lines = [json.loads(line) for line in serve.output().splitlines() if line.strip()]
    assert any(line["message"] == "serving" for line in lines)
    for secret in (ITERABLE_KEY, SEGMENT_KEY, WRITE_KEY, WEBHOOK_TOKEN):
        assert secret not in serve.output()


async def test_sigint_also_stops_with_exit_0(spawn: Any, tmp_path: Path) -> None:
    port = free_port()
    serve = spawn(EXAMPLE, env=example_env(tmp_path, port, "http://127.0.0.1:9", "http://127.0.0.1:9"), port=port)
    await serve.ready()
    assert await serve.stop(signal.SIGINT) == 0


async def test_readyz_is_503_while_postgresql_is_unreachable(spawn: Any, tmp_path: Path, tcp_proxy: Any,
                                                              pg_url: str) -> None:
    port = free_port()
    ledger = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{tcp_proxy.port}")
    serve = spawn(EXAMPLE, env=example_env(tmp_path, port, "http://127.0.0.1:9", "http://127.0.0.1:9", ledger),
                  port=port)
    await serve.ready()
    assert (await http_json("GET", f"{serve.url}/readyz"))[0] == 200
    await tcp_proxy.cut()
    status, body = await http_json("GET", f"{serve.url}/readyz")
    assert status == 503 and body["ready"] is False and "ledger" in body["reason"]
    status, body = await http_json("POST", f"{serve.url}/iterable/webhook",
                                   headers={"Authorization": WEBHOOK_TOKEN}, json=ITERABLE_WEBHOOKS[0])
    assert status == 503 and body["success"] is False
    await tcp_proxy.open()
    await wait_for(lambda: _ready(serve.url), within=15)
    assert await serve.stop() == 0


async def _ready(url: str) -> bool:
    return (await http_json("GET", f"{url}/readyz"))[0] == 200


async def test_a_second_serve_on_the_same_sqlite_file_exits_1(spawn: Any, tmp_path: Path) -> None:
    port = free_port()
    env = example_env(tmp_path, port, "http://127.0.0.1:9", "http://127.0.0.1:9")
    first = spawn(EXAMPLE, env=env, port=port)
    await first.ready()
    second = spawn(EXAMPLE, env={**env, "SYNC_PORT": str(free_port())}, name="second.toml")
    assert await second.wait() == 1
    assert "another `serve` process already uses the SQLite ledger" in second.output()
    assert await first.stop() == 0


async def test_a_port_already_taken_exits_1_with_one_line_naming_it(spawn: Any, tmp_path: Path) -> None:
    """A fresh-eyes walk: serve on a port something else listens on printed a 35-line traceback."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        serve = spawn(EXAMPLE, env=example_env(tmp_path, port, "http://127.0.0.1:9", "http://127.0.0.1:9"))
        assert await serve.wait() == 1
        out = serve.output()
        assert f"error: cannot listen on 127.0.0.1:{port}:" in out and "(server.host, server.port)" in out
        assert "Traceback" not in out
    finally:
        taken.close()


async def test_an_unreachable_database_at_start_exits_1_naming_it(spawn: Any, tmp_path: Path) -> None:
    env = example_env(tmp_path, free_port(), "http://127.0.0.1:9", "http://127.0.0.1:9",
                      f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    serve = spawn(EXAMPLE, env=env)
    assert await serve.wait() == 1
    assert "error: cannot migrate the ledger" in serve.output()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.parametrize(("text", "key"), [
    ('[server]\nport = "eighty"\n', "server.port"),
    ('[server]\nprot = 1\n', "server.prot: unknown key"),
    ('[iterable]\nregion = "mars"\n', "iterable.region"),
    ('[ledger]\nurl = "mysql://x"\n', "ledger.url"),
    ('[inbound]\nevent_names = "both"\n', "inbound.event_names"),
    ('[outbound]\nwrite_keys = "k"\n', "outbound.write_keys"),
    ('[iterable.rate_limits]\n"events/trackBulk" = -1\n', 'iterable.rate_limits."events/trackBulk"'),
    ("not toml = = =\n", "not valid TOML"),
])
def test_bad_config_exits_1_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("serve", "check-config"):
        done = run_cli(command, "--config", str(path))
        assert done.returncode == 1 and key in done.stderr, done.stderr


def test_missing_credentials_name_their_keys(tmp_path: Path) -> None:
    done = run_cli("check-config", "--config", str(ROOT / "config.example.toml"),
                   env={"ITERABLE_API_KEY": "", "SEGMENT_WRITE_KEY": "", "ITERABLE_WEBHOOK_TOKEN": ""})
    assert done.returncode == 1
    for key in ("iterable.api_key", "segment.write_key", "inbound.auth_tokens"):
        assert key in done.stderr


def test_usage_errors_exit_2_and_config_comes_from_sync_config(tmp_path: Path) -> None:
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("check-config", env={"SYNC_CONFIG": ""}).returncode == 2
    env = example_env(tmp_path, 8787, "http://x", "http://y")
    done = run_cli("check-config", env={**env, "SYNC_CONFIG": str(ROOT / "config.example.toml")})
    assert done.returncode == 0 and "is valid" in done.stdout
    # a 200 from Segment proves nothing: check-config says where events go and how to see them arrive
    assert "Segment at http://y" in done.stdout and "Debugger" in done.stdout and "reconciliation" in done.stdout


def test_migrate_command_and_console_script(tmp_path: Path) -> None:
    env = example_env(tmp_path, 8787, "http://x", "http://y")
    done = run_cli("migrate", "--config", str(ROOT / "config.example.toml"), env=env)
    assert done.returncode == 0 and "migrated" in done.stdout
    script = Path(sys.executable).parent / "iterable-sync"
    if not script.exists():
        pytest.skip("console script not installed (make test installs the package)")
    done = subprocess.run([str(script), "check-config", "--config", str(ROOT / "config.example.toml")],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
