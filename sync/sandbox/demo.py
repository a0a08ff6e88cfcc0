"""``make demo``: the real daemon on SQLite between local stand-ins for Iterable and Segment.

Starts the fakes on loopback, runs ``python -m sync serve`` as a child process, sends sample
Segment events (with segment-analytics-python and as a signed webhook) and Iterable webhooks,
then prints what each side received and stops the daemon with SIGTERM.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from segment.analytics import Client

from sync.sandbox.iterable import FakeIterable
from sync.sandbox.samples import ITERABLE_WEBHOOKS, SEGMENT_EVENTS
from sync.sandbox.segment import FakeSegment

KEYS = {"iterable": "demo-iterable-key", "segment": "demo-segment-key", "write": "demo-write-key",
        "secret": "demo-shared-secret", "token": "demo-webhook-token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def config_text(folder: Path, port: int, iterable_url: str, segment_url: str) -> str:
    return f"""
[server]
port = {port}
[ledger]
url = "sqlite:///{folder}/ledger.db"
[iterable]
api_key = "{KEYS['iterable']}"
base_url = "{iterable_url}"
[segment]
write_key = "{KEYS['segment']}"
host = "{segment_url}"
[outbound]
write_keys = ["{KEYS['write']}"]
shared_secrets = ["{KEYS['secret']}"]
[inbound]
auth_tokens = ["{KEYS['token']}"]
"""


async def wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.returncode is not None:
                raise SystemExit(f"the daemon exited with {process.returncode}")
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not become ready")


def send_with_segment_library(url: str) -> None:
    client = Client(KEYS["write"], host=url, upload_interval=0.1)
    for event in SEGMENT_EVENTS:
        kind = event["type"]
        if kind == "identify":
            client.identify(event["userId"], event["traits"])
        elif kind == "track":
            client.track(event["userId"], event["event"], event["properties"])
        elif kind == "page":
            client.page(event["userId"], name=event["name"], properties=event["properties"])
        elif kind == "group":
            client.group(event["userId"], event["groupId"])
    client.flush()
    client.join()


async def send_traffic(url: str) -> None:
    await asyncio.to_thread(send_with_segment_library, url)
    body = json.dumps({"type": "track", "userId": "user-1", "event": "Webhook Delivered",
                       "properties": {"via": "Segment Webhooks destination"}}).encode()
    signature = hmac.new(KEYS["secret"].encode(), body, hashlib.sha1).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/segment/webhook", data=body, headers={"X-Signature": signature}) as r:
            print(f"  POST /segment/webhook -> {r.status}")
        for webhook in ITERABLE_WEBHOOKS:
            async with session.post(f"{url}/iterable/webhook", json=webhook,
                                    headers={"Authorization": KEYS["token"]}) as r:
                print(f"  POST /iterable/webhook ({webhook['eventName']}) -> {r.status}")


def report(iterable: FakeIterable, segment: FakeSegment) -> None:
    print("\nIterable received:")
    for endpoint, body in iterable.requests:
        items = body.get("users") or body.get("events")
        summary = ", ".join(_describe(i) for i in items) if items else _describe(body)
        print(f"  POST /api/{endpoint}: {summary}")
    print("\nSegment received (track calls):")
    for message in segment.messages:
        who = message.get("userId") or message.get("anonymousId")
        print(f"  {message['event']:<22} {who:<28} at {message['timestamp']}  messageId={message['messageId']}")


def _describe(body: dict[str, Any]) -> str:
    if "eventName" in body:
        return f"event {body['eventName']!r}"
    if "total" in body:
        return f"purchase {body.get('id')} total={body['total']}"
    if "items" in body:
        return f"cart with {len(body['items'])} item(s)"
    return f"user {body.get('email') or body.get('userId')}"


async def main() -> int:
    iterable, segment = FakeIterable(KEYS["iterable"]), FakeSegment(KEYS["segment"])
    (runner_i, iterable_url), (runner_s, segment_url) = await start(iterable.app()), await start(segment.app())
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        config = Path(folder) / "demo.toml"
        config.write_text(config_text(Path(folder), port, iterable_url, segment_url))
        print(f"fake Iterable on {iterable_url}, fake Segment on {segment_url}, ledger in {folder}")
        daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "sync", "serve", "--config", str(config))
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(url, daemon)
            print(f"daemon ready on {url}; sending sample traffic")
            await send_traffic(url)
            for _ in range(150):
                if len(segment.messages) >= len(ITERABLE_WEBHOOKS) and len(iterable.event_log) >= 3 \
                        and iterable.purchases:
                    break
                await asyncio.sleep(0.2)
            report(iterable, segment)
            print()
            stats = await asyncio.create_subprocess_exec(sys.executable, "-m", "sync", "ledger", "stats",
                                                         "--config", str(config))
            await stats.wait()
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(daemon.wait(), 30)
            print(f"\ndaemon stopped with exit code {code}")
    await runner_i.cleanup()
    await runner_s.cleanup()
    return code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
