"""What the benchmarks share: throw-away databases, serve processes, a counting stand-in for Iterable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from sync.sandbox.iterable import FAILURE_KEYS
from tests.support import daemon_config

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"sync_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """A ``python -m sync serve`` child (or any module given), with its peak memory."""

    def __init__(self, folder: Path, ledger_url: str, iterable_url: str, *, extra: str = "",
                 module: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        config = folder / f"serve-{self.port}.toml"
        config.write_text(daemon_config(self.port, ledger_url, iterable_url, "http://127.0.0.1:9", lease=30.0,
                                        extra=extra).replace("[inbound]", "[inbound]\nenabled = false", 1))
        command = module or ("-m", "sync", "serve", "--config", str(config))
        self.log = open(folder / f"serve-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, within: float = 60.0) -> None:
        await healthy(self.url, within, alive=lambda: self.process.poll() is None)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far (``/proc/<pid>/stat``)."""
        return cpu_seconds(self.process.pid)

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 60)
        self.log.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def healthy(url: str, within: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url``/healthz answers 200 (a process that died meanwhile fails at once)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert alive(), f"{url} exited before it was ready"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not start")


class CountingIterable:
    """Answers ``events/trackBulk`` and ``users/bulkUpdate`` as Iterable does when all is well, and counts."""

    def __init__(self) -> None:
        self.events = 0
        self.requests = 0

    def app(self) -> web.Application:
        async def bulk(request: web.Request) -> web.Response:
            body = await request.json()
            items = body.get("events") or body.get("users") or []
            self.events += len(items)
            self.requests += 1
            answer: dict[str, Any] = {"successCount": len(items), "failCount": 0, "createdFields": [],
                                      "filteredOutFields": [], "disallowedEventNames": [], "invalidEmails": [],
                                      "invalidUserIds": [], "failedUpdates": {k: [] for k in FAILURE_KEYS}}
            return web.json_response(answer)

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/api/events/trackBulk", bulk)
        app.router.add_post("/api/users/bulkUpdate", bulk)
        return app
