"""``make demo``: the real daemon on SQLite between local stand-ins for Iterable and Segment.

Starts the fakes on loopback, runs ``python -m sync serve`` as a child process with the README's
"mobile app" mapping recipe (``recipes/mobile_app.toml``), sends sample Segment events (with
segment-analytics-python and as a signed webhook) and Iterable webhooks, then prints what each side
received (an inbound track joined to the userId an identify linked to its email), what the recipe and
end-user consent kept out and why, and the operator console's address and login token; then it
stops the daemon with SIGTERM, or with ``DEMO_KEEP=1`` keeps everything running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import sqlite3
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from segment.analytics import Client

from sync.sandbox.iterable import FakeIterable
from sync.sandbox.samples import ITERABLE_WEBHOOKS, SEGMENT_EVENTS
from sync.sandbox.segment import FakeSegment

CONSOLE_TOKEN = secrets.token_urlsafe(18)  # a new login token for each run of the demo
BROKEN_EMAIL = "broken@example.com"  # the fake Iterable refuses it: the demo's dead letter
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


RECIPE = Path(__file__).parent / "recipes" / "mobile_app.toml"


def toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for configs: tables, strings, numbers, booleans, lists and inline tables."""
    plain = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [toml(v, f"{prefix}{_toml_key(k)}.") for k, v in data.items() if isinstance(v, dict)]
    head = f"[{prefix.rstrip('.')}]\n" if prefix and plain else ""
    return head + "".join(f"{line}\n" for line in plain) + "".join(tables)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_text(folder: Path, port: int, iterable_url: str, segment_url: str) -> str:
    """The demo's own settings with the recipe's mapping keys merged in."""
    return toml(merged(tomllib.loads(_base_config(folder, port, iterable_url, segment_url)),
                       tomllib.loads(RECIPE.read_text())))


def _base_config(folder: Path, port: int, iterable_url: str, segment_url: str) -> str:
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
[reconcile]
enabled = false
[console]
enabled = true
tokens = ["{CONSOLE_TOKEN}"]
[consent]
outbound_categories = ["Marketing"]
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
    # an anonymous visitor: held until they sign up, then sent, in order, after the sign-up
    client.screen(anonymous_id="visitor-7", name="Paywall", properties={"variant": "b"})
    client.track(anonymous_id="visitor-7", event="Trial Preview Played", properties={"seconds": 30})
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
    # what the mobile-app recipe shapes: a named screen, a renamed lifecycle event, a debug build kept out
    client.screen("user-1", name="Player", properties={"track": "Intro"})
    client.track("user-1", "Application Opened", {"from_background": False},
                 context={"app": {"namespace": "com.example.player"}, "device": {"model": "Pixel 9"}})
    client.track("user-1", "Debug Ping", {}, context={"app": {"namespace": "com.example.player.debug"}})
    client.identify("user-9", {"email": BROKEN_EMAIL})  # refused by the fake Iterable: a dead letter
    # the reader of Iterable's sample emails signs up: their inbound email events join this userId in Segment
    client.identify("docs-reader", {"email": "docs@iterable.com"})
    # end-user consent: their consent manager denied "Marketing", so this event stays out of Iterable
    client.track("docs-reader", "Promo Banner Viewed", {"banner": "spring"},
                 context={"consent": {"categoryPreferences": {"Marketing": False, "Analytics": True}}})
    client.flush()
    client.identify("user-7", {"email": "user7@example.com", "plan": "trial"}, anonymous_id="visitor-7")
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


async def send_deletion(url: str) -> None:
    """What Segment's Webhooks (Classic) destination sends for a deletion request (a regulation)."""
    body = json.dumps({"type": "delete", "userId": "user-1", "messageId": "regulation-1"}).encode()
    signature = hmac.new(KEYS["secret"].encode(), body, hashlib.sha1).hexdigest()
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/segment/webhook", data=body, headers={"X-Signature": signature}) as response:
        print(f"  POST /segment/webhook (deletion of user-1) -> {response.status}")


async def send_type_mismatch(url: str) -> None:
    """A value of another type than the one Iterable fixed for the field (``plan`` is a string in the project):
    the type guard (``outbound.type_guard``) refuses it at intake instead of a bulk request failing later."""
    event = {"userId": "user-7", "traits": {"plan": 3}, "messageId": "demo-type-mismatch", "writeKey": KEYS["write"]}
    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/identify", json=event) as response:
        body = await response.json()
        print(f"  POST /v1/identify (user-7, plan = 3) -> {response.status}: {body.get('error')}")


def report(iterable: FakeIterable, segment: FakeSegment) -> None:
    print("\nIterable received:")
    for endpoint, body in iterable.requests:
        items = body.get("users") or body.get("events")
        summary = ", ".join(_describe(i) for i in items) if items else _describe(body)
        print(f"  POST /api/{endpoint}: {summary}")
    for deletion in iterable.deletions:
        print(f"  DELETE /api/users/byUserId/{deletion.get('userId')}: user deleted (the ledger forgot them too)")
    print("\nSegment received (track calls):")
    for message in segment.messages:
        who = message.get("userId") or message.get("anonymousId")
        joined = " (userId joined to the email)" if message.get("userId") and message.get("anonymousId") else ""
        print(f"  {message['event']:<26} {who:<28} at {message['timestamp']}  messageId={message['messageId']}"
              f"{joined}")


def _pending(ledger: Path) -> int:
    with contextlib.closing(sqlite3.connect(ledger)) as connection:
        return int(connection.execute("SELECT count(*) FROM events WHERE status = 'pending'").fetchone()[0])


def _describe(body: dict[str, Any]) -> str:
    if "eventName" in body:
        who = body.get("userId") or body.get("email")
        return f"event {body['eventName']!r} of {who}"
    if "total" in body:
        return f"purchase {body.get('id')} total={body['total']}"
    if "items" in body:
        return f"cart with {len(body['items'])} item(s)"
    return f"user {body.get('email') or body.get('userId')}"


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def main() -> int:
    iterable, segment = FakeIterable(KEYS["iterable"]), FakeSegment(KEYS["segment"])
    iterable.poison_emails = {BROKEN_EMAIL}
    # the project already has a string field `plan` (as a real project does once a first value was written): the
    # daemon reads it from users/getFields at start, so its type guard knows it before the demo's traffic
    iterable.project.field_types["plan"] = "string"
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
                if iterable.idle and not _pending(Path(folder) / "ledger.db") and iterable.purchases:
                    break
                await asyncio.sleep(0.2)
            await send_type_mismatch(url)
            await send_deletion(url)
            for _ in range(100):
                if iterable.deletions and iterable.idle and not _pending(Path(folder) / "ledger.db"):
                    break
                await asyncio.sleep(0.2)
            report(iterable, segment)
            print("\nSkipped rows, with the rule that decided (ledger list --status skipped):")
            listing = await asyncio.create_subprocess_exec(sys.executable, "-m", "sync", "ledger", "list", "--status",
                                                           "skipped", "--config", str(config))
            await listing.wait()
            print()
            stats = await asyncio.create_subprocess_exec(sys.executable, "-m", "sync", "ledger", "stats",
                                                         "--config", str(config))
            await stats.wait()
            print(f"\nOperator console: {url}/console  (login token: {CONSOLE_TOKEN})")
            if os.environ.get("DEMO_KEEP") == "1":
                iterable.poison_emails = set()  # the fake's incident is over: retry the dead letter from the console
                print("DEMO_KEEP=1: the daemon keeps running (the dead letter of user-9 can be retried now); "
                      "Ctrl-C stops it")
                await _until_interrupted()
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(daemon.wait(), 30)
            print(f"\ndaemon stopped with exit code {code}")
    await runner_i.cleanup()
    await runner_s.cleanup()
    return code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
