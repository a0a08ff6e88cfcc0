"""Real processes for the acceptance and reliability suites: ``serve`` children and a cuttable TCP proxy.

The fixtures ``spawn`` and ``tcp_proxy`` are registered in ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """A ``serve`` child process with its port, output and exit code."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port
        self.log = config.with_suffix(f".{port}.log")
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync", "serve", "--config", str(config), *args], cwd=ROOT,
            env={**os.environ, **(env or {})}, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    async def ready(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.output()}")
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.output()}")

    async def stop(self, sig: int = signal.SIGTERM, within: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = await asyncio.to_thread(self.process.wait, within)
        self._out.close()
        return code

    async def wait(self, within: float = 20.0) -> int:
        code = await asyncio.to_thread(self.process.wait, within)
        self._out.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._out.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    started: list[Serve] = []

    def start(config_text: str, *, env: dict[str, str] | None = None, port: int | None = None,
              args: tuple[str, ...] = (), name: str = "config.toml") -> Serve:
        path = tmp_path / name
        path.write_text(config_text)
        serve = Serve(path, port or free_port(), env, args)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.kill()


async def http_json(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Any]:
    """A loopback TCP proxy to PostgreSQL that the test can cut and restore."""

    class Proxy:
        def __init__(self) -> None:
            self.port = free_port()
            self.server: asyncio.base_events.Server | None = None
            self.links: set[asyncio.StreamWriter] = set()

        async def open(self) -> None:
            self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port, reuse_address=True)

        async def cut(self) -> None:
            if self.server:
                self.server.close()
                await self.server.wait_closed()
                self.server = None
            for writer in list(self.links):
                writer.transport.abort()
            self.links.clear()

        async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
            except OSError:
                writer.close()
                return
            self.links.update({writer, up_writer})

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    dst.transport.abort()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = Proxy()
    await proxy.open()
    yield proxy
    await proxy.cut()
