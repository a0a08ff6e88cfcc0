"""Model-based test of the ledger (hypothesis state machine): random interleavings of ingest, duplicate
ingest, claim, deliver, fail, lease expiry, requeue and restart. Invariants: each event has exactly one
row per direction, attempts never decrease, statuses follow the model, a row never leaves the ledger,
a claim never hands out a row leased to someone else or a user's row ahead of an earlier waiting one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from sync.ledger import migrate
from sync.ledger.store import Ledger, create_engine
from sync.model import TERMINAL, Claim, Direction, NewEvent, Settlement, Status

KEYS = [f"e{n}" for n in range(10)]
USERS = ["u1", "u2", "u3"]
LEASE = 10.0


def machine_for(url: str, reset: Any) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def open(self) -> None:
            reset()
            self.loop = asyncio.new_event_loop()
            self.ledger = self._connect()
            self.run(migrate.upgrade(self.ledger.engine))
            self.now = datetime(2026, 1, 1, tzinfo=UTC)
            self.model: dict[tuple[Direction, str], dict[str, Any]] = {}
            self.leases: dict[int, tuple[str, datetime]] = {}

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def _connect(self) -> Ledger:
            return Ledger(create_engine(url))

        def teardown(self) -> None:
            if hasattr(self, "ledger"):
                self.run(self.ledger.close())
                self.loop.close()

        def _rows(self) -> list[Any]:
            return [r for status in Status for r in self.run(self.ledger.rows(status=status, limit=1000))]

        # -- rules --------------------------------------------------------------------------------

        @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4),
              direction=st.sampled_from(list(Direction)), user=st.sampled_from(USERS))
        def ingest(self, keys: list[str], direction: Direction, user: str) -> None:
            events = [NewEvent(direction=direction, key=k, kind="track", payload={"k": k}, user_key=user) for k in keys]
            duplicates = self.run(self.ledger.record(events, self.now))
            assert duplicates == {k for k in keys if (direction, k) in self.model}
            for key in keys:
                self.model.setdefault((direction, key), {"status": Status.PENDING, "attempts": 0, "user": user,
                                                         "due": self.now, "order": len(self.model)})

        @rule(owner=st.sampled_from(["a", "b"]), limit=st.integers(1, 5), direction=st.sampled_from(list(Direction)))
        def claim(self, owner: str, limit: int, direction: Direction) -> None:
            claim = Claim(direction=direction, owner=owner, limit=limit, lease_seconds=LEASE)
            rows = self.run(self.ledger.claim(claim, self.now))
            assert len(rows) <= limit
            for row in rows:
                entry = self.model[(direction, row.key)]
                assert entry["status"] is Status.PENDING and entry["due"] <= self.now
                held = self.leases.get(row.id)
                assert held is None or held[1] <= self.now, "claimed a row leased to someone else"
                for (d, key), other in self.model.items():
                    earlier_waiting = (d == direction and other["user"] == entry["user"]
                                       and other["order"] < entry["order"] and other["status"] is Status.PENDING
                                       and key not in {r.key for r in rows})
                    assert not earlier_waiting, f"{row.key} overtook {key} of the same user"
                self.leases[row.id] = (owner, self.now + timedelta(seconds=LEASE))

        @rule(data=st.data(), outcome=st.sampled_from(["delivered", "retry", "dead", "released"]))
        def settle(self, data: st.DataObject, outcome: str) -> None:
            live = [i for i, (_, until) in self.leases.items() if until > self.now]
            if not live:
                return
            row_id = data.draw(st.sampled_from(live))
            row = next(r for r in self._rows() if r.id == row_id)
            entry = self.model[(row.direction, row.key)]
            later = self.now + timedelta(seconds=data.draw(st.integers(1, 30)))
            settlement = {"delivered": Settlement(delivered=(row_id,)),
                          "retry": Settlement(retry=((row_id, later, "HTTP 503"),)),
                          "dead": Settlement(dead=((row_id, "HTTP 400"),)),
                          "released": Settlement(released=(row_id,))}[outcome]
            self.run(self.ledger.settle(settlement, self.now, owner=self.leases[row_id][0]))
            del self.leases[row_id]
            if entry["status"] is not Status.PENDING:
                return
            if outcome != "released":
                entry["attempts"] += 1
            if outcome == "delivered":
                entry["status"] = Status.DELIVERED
            elif outcome == "dead":
                entry["status"] = Status.DEAD
            elif outcome == "retry":
                entry["due"] = later

        @rule(seconds=st.integers(1, 40))
        def time_passes(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        @rule()
        def restart(self) -> None:
            """The process dies: its in-memory state is gone, its leases stay until they expire."""
            self.run(self.ledger.close())
            self.ledger = self._connect()

        @rule()
        def requeue_dead(self) -> None:
            count = self.run(self.ledger.requeue(self.now, status=Status.DEAD))
            dead = [e for e in self.model.values() if e["status"] is Status.DEAD]
            assert count == len(dead)
            for entry in dead:
                entry.update(status=Status.PENDING, due=self.now)

        # -- invariants ---------------------------------------------------------------------------

        @invariant()
        def one_row_per_event_and_statuses_follow_the_model(self) -> None:
            if not hasattr(self, "ledger"):
                return
            rows = self._rows()
            assert len(rows) == len({(r.direction, r.key) for r in rows}) == len(self.model)
            for row in rows:
                entry = self.model[(row.direction, row.key)]
                assert row.status is entry["status"]
                assert row.attempts == entry["attempts"]  # attempts only ever grow, with each outcome
                assert row.status is Status.PENDING or row.status in TERMINAL

    return LedgerMachine


def test_ledger_state_machine(ledger_url: str) -> None:
    from tests.conftest import _blocking, _reset_pg

    def reset() -> None:
        if ledger_url.startswith("postgresql"):
            _blocking(_reset_pg(ledger_url))
            return
        path = ledger_url.split(":///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    examples = 25 if ledger_url.startswith("postgresql") else 50
    run_state_machine_as_test(machine_for(ledger_url, reset), settings=settings(
        max_examples=examples, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)))


