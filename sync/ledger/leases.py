"""When a claim's lease has run out, judged so that no process clock can make a row go out twice (SPEC section 4,
"Time and stalls").

- PostgreSQL (replicas): a lease ends by the database's clock. A claim or a renewal writes ``now()`` plus the
  lease; a claim or the reaper compares with ``now()``. Replicas' clocks may disagree, or one may step, and
  still no replica takes a row another holds.
- SQLite (one process owns the file): the leases of this process's live owners never run out while the
  process lives; they end when the owner settles or releases them (``Ledger.release_owner``). Only a lease left
  by an owner this process does not run (a process that died) is judged by time. A clock step in the process
  cannot take back its own in-flight rows.

``now`` (the process's clock) still decides when a row is due: that only times a try, it cannot duplicate one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sync.ledger.schema import events


class Leases:
    """SQL conditions for one ledger; ``live`` holds the owners that claimed through it and have not released."""

    def __init__(self, *, postgres: bool) -> None:
        self.postgres = postgres
        self.live: set[str] = set()

    def free(self, now: datetime) -> Any:
        """A row nobody holds a running lease on."""
        return sa.or_(events.c.lease_owner.is_(None), self.expired(now))

    def expired(self, now: datetime) -> Any:
        """A leased row whose lease has run out."""
        if self.postgres:
            return events.c.lease_expires_at <= sa.func.now()
        ran_out = events.c.lease_expires_at <= now
        if not self.live:
            return ran_out
        return sa.and_(ran_out, events.c.lease_owner.not_in(sorted(self.live)))

    def running(self) -> Any:
        """A lease not run out, for its holder's own re-check at send: on PostgreSQL by the database's clock (a
        replica that stalled past its lease, through a ledger outage say, must not send a row another replica
        may hold now); on SQLite a live owner's lease does not run out."""
        if self.postgres:
            return events.c.lease_expires_at > sa.func.now()
        return sa.true()

    def until(self, until: datetime, seconds: float | None) -> Any:
        """The value a claim or a renewal writes as the lease's end: on PostgreSQL ``now()`` plus ``seconds``."""
        if self.postgres and seconds is not None:
            return sa.func.now() + sa.bindparam("lease_interval", timedelta(seconds=seconds), type_=sa.Interval())
        return until
