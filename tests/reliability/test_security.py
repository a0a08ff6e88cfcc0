"""Security points: constant-time comparisons, no secret or payload in logs at the default level, no
secret in /metrics or /readyz."""

from __future__ import annotations

import base64
import hmac
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.app import Daemon
from sync.http import auth
from sync.sandbox import FakeIterable, FakeSegment, Fault
from tests.processes import free_port, http_json
from tests.reliability.conftest import BASIC, daemon_config, known_users
from tests.support import ITERABLE_KEY, SEGMENT_KEY, SHARED_SECRET, WEBHOOK_TOKEN, WRITE_KEY, sign, wait_for

SECRETS = (ITERABLE_KEY, SEGMENT_KEY, WRITE_KEY, WEBHOOK_TOKEN, SHARED_SECRET)
MARKER = "payload-marker-7f3a"


def test_credentials_are_compared_in_constant_time_against_every_candidate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert auth.matches_any("second", ["first", "second", "third"])
    assert len(calls) == 3  # no early exit on the match
    calls.clear()
    assert not auth.matches_any("nope", ["first", "second"])
    assert len(calls) == 2


async def test_logs_at_the_default_level_hold_no_secret_and_no_payload(
        spawn: Any, tmp_path: Path, fake_iterable: tuple[FakeIterable, str],
        fake_segment: tuple[FakeSegment, str]) -> None:
    iterable, iterable_url = fake_iterable
    segment, segment_url = fake_segment
    known_users(iterable)
    iterable.poison_emails = {f"{MARKER}@example.com"}
    segment.faults.add(Fault(status=401, times=2, body={"code": "unauthorized", "message": "bad key"}))
    port = free_port()
    text = daemon_config(port, f"sqlite:///{tmp_path}/l.db", iterable_url, segment_url)
    serve = spawn(text.replace(f'write_keys = ["{WRITE_KEY}"]',
                               f'write_keys = ["{WRITE_KEY}"]\nshared_secrets = ["{SHARED_SECRET}"]'),
                  port=port, args=("--log-format", "json"))
    await serve.ready()
    batch = {"batch": [{"type": "identify", "userId": "k1", "traits": {"email": f"{MARKER}@example.com",
                                                                       "note": MARKER}}]}
    assert (await http_json("POST", f"{serve.url}/v1/batch", headers=BASIC, json=batch))[0] == 200
    webhook = {"email": "k2@example.com", "eventName": "emailOpen", "dataFields": {"note": MARKER}}
    assert (await http_json("POST", f"{serve.url}/iterable/webhook", headers={"Authorization": WEBHOOK_TOKEN},
                            json=webhook))[0] == 200
    for headers in ({"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}x:".encode()).decode()},
                    {"Authorization": WEBHOOK_TOKEN[:-1]}):
        await http_json("POST", f"{serve.url}/v1/batch", headers=headers, json=batch)
        await http_json("POST", f"{serve.url}/iterable/webhook", headers=headers, json=webhook)
    await wait_for(lambda: len(segment.messages) == 1, within=15)
    assert await serve.stop() == 0
    output = serve.output()
    assert "event dead-lettered" in output and "paused" in output  # there was something to log
    for secret in SECRETS:
        assert secret not in output
    assert MARKER not in output


async def test_metrics_and_readyz_reveal_no_secret(daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    fake.api_key = "rotated"  # the daemon's key is now refused: a paused direction with a reason
    raw = b'{"type": "track", "userId": "u", "event": "E"}'
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{daemon.address[1]}/segment/webhook", data=raw,
                                headers={"X-Signature": sign(raw)}) as response:
            assert response.status == 200
        await wait_for(lambda: "outbound" in daemon.paused())
        for path in ("/metrics", "/readyz", "/healthz"):
            async with session.get(f"http://127.0.0.1:{daemon.address[1]}{path}") as response:
                body = await response.text()
            for secret in SECRETS:
                assert secret not in body, path
    assert "401" in daemon.paused()["outbound"]
