"""The realistic-lag run: Iterable makes a new user visible only after 60 s (it asks clients to allow at
least that). In an email-based project, the strictest, events for a user nobody can see yet are "not
found"; a burst of sign-ups must still end with every event delivered and nothing dead-lettered."""

# Real time on purpose: the run shows delivery outlasting a 60 s creation lag that the fake keeps by the wall clock.

from __future__ import annotations

import json
import time
from pathlib import Path

from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment
from tests.conftest import started
from tests.integration.test_outbound import post
from tests.support import make_config, wait_for

LAG = 60.0
USERS = 6


async def test_sign_ups_under_a_60_second_creation_lag_are_all_delivered(
        tmp_path: Path, fake_iterable: tuple[FakeIterable, str], fake_segment: tuple[FakeSegment, str]) -> None:
    """One run, on SQLite (the ledger contract suite covers both databases)."""
    fake, iterable_url = fake_iterable
    fake.reset(project_type="email", visibility_lag=LAG, bulk_delay=0.2, single_delay=0.2)
    fake.add_users(1, "old")
    ledger_url = f"sqlite:///{tmp_path}/lag.db"
    config = make_config(ledger_url=ledger_url, iterable_url=iterable_url, segment_url=fake_segment[1],
                         iterable={"project_type": "email"})
    batch = []
    for n in range(USERS):
        traits = {"traits": {"email": f"lag{n}@example.com"}}
        batch += [
            {"type": "identify", "userId": f"lag{n}", "messageId": f"{n}-i", "traits": {"email": f"lag{n}@example.com"}},
            {"type": "track", "userId": f"lag{n}", "event": "Signed Up", "messageId": f"{n}-s", "context": traits},
            {"type": "track", "userId": f"lag{n}", "event": "Tour Started", "messageId": f"{n}-t", "context": traits},
        ]
    batch.append({"type": "track", "userId": "old0", "event": "Still Here", "messageId": "old",
                  "context": {"traits": {"email": "old0@example.com"}}})
    async with started(config, ledger_url) as daemon:
        sent = time.monotonic()
        assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
        await wait_for(lambda: "old" in fake.events, within=5)
        established = time.monotonic() - sent
        await wait_for(lambda: len(fake.events) == 2 * USERS + 1, within=LAG + 60)
        new_users = time.monotonic() - sent
        counts = {s: n for (d, s), n in (await daemon.ledger.stats()).counts.items() if d == Direction.OUTBOUND}
        attempts = max(r.attempts for r in await daemon.ledger.rows(status=Status.DELIVERED, limit=100))
    figures = {"lag_s": LAG, "users": USERS, "events": len(batch), "counts": counts,
               "established_user_s": round(established, 2), "new_users_all_delivered_s": round(new_users, 1),
               "most_attempts": attempts}
    print(f"\ncreation lag: {json.dumps(figures)}")
    assert counts == {"delivered": len(batch)}  # nothing dead-lettered
    assert established < 2  # an established user's event did not wait for the new users
    assert new_users >= LAG  # the new users' events really met the lag
