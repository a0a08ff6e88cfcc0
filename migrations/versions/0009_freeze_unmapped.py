"""Rows recorded before the mapping was stored (revision 0004) decided once, here: no sink maps at delivery.

Revision 0004 stored the upstream call decided at intake (``mapped``); rows recorded before it kept NULL
and were mapped by the sinks at every try. This revision decides each of them once, as intake decides an
arriving event (``sync.engine.explain.decide``, which ``check-config --try`` and ``ledger retry --remap``
use too); from here on the sinks send frozen calls only.

- Which rows: ``pending``, ``dead`` and ``delivered`` rows whose ``mapped`` is NULL, forgotten people's
  rows left out (and those whose ``mapped`` is JSON null: a rejected or skipped row requeued as recorded,
  which had no call). Held rows are decided when their visitor is identified; ``rejected`` and ``skipped``
  rows never had a call (deciding them again is ``ledger retry --remap``).
- Which mapping: the configured one when the daemon migrates (``python -m sync migrate --config FILE``,
  ``serve`` and ``backfill`` hand their config to Alembic); the default mapping (a config with no mapping
  keys) when Alembic runs without it. Each decided row's ``mapping_digest`` names the mapping that decided
  it, and a history entry says which of the two it was and what it decided.
- What becomes of a row: a call is frozen in ``mapped`` (the status stays: a dead row retried later, or a
  delivered row replayed, sends that call); a pending row the mapping skips or rejects becomes ``skipped`` or ``rejected`` with the reason,
  as intake would record it; a pending row the mapper fails on becomes ``dead`` with a reason naming the
  error's type (its message may quote personal data). A dead or delivered row that gets no call stays as
  it was. No row makes the migration fail. Each changed row gets a history entry, except delivered rows
  (often most of an old ledger; a replay's own history says what it sent).
- A token or subscriptions row (an event's companion call) gets the call its event brings under that key.
- Not applied, as the sinks did not apply them at delivery either: the type guard (Iterable's field types are
  not known here), and for inbound rows end-user consent and the linked userId (decided inside intake's
  commit from the ledger's links).

Rows are read and updated 500 at a time in id order, so a large ledger is never held in memory.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from sync.config import Config, mapping_digest
from sync.engine import explain
from sync.engine.intake import outbound_options
from sync.engine.remap import COMPANIONS
from sync.errors import InvalidEvent
from sync.ledger.schema import UTCDateTime
from sync.model import DETAIL_CHARS, Direction, NewEvent, Status, reason_class
from sync.outbound.companions import derived
from sync.segment.spec import validate

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHUNK = 500

# the columns as revision 0008 left them (not sync.ledger.schema's tables, which follow later revisions)
events = sa.table(
    "events",
    sa.column("id", sa.Integer()), sa.column("direction", sa.String()), sa.column("key", sa.String()),
    sa.column("kind", sa.String()), sa.column("user_key", sa.String()), sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()), sa.column("received_at", UTCDateTime()), sa.column("updated_at", UTCDateTime()),
    sa.column("mapped", sa.JSON()), sa.column("mapping_digest", sa.String()), sa.column("reason", sa.Text()),
    sa.column("reason_class", sa.String()),
)
attempts = sa.table(
    "attempts",
    sa.column("event_id", sa.Integer()), sa.column("at", UTCDateTime()), sa.column("outcome", sa.String()),
    sa.column("detail", sa.Text()),
)


def settings() -> tuple[Config, str]:
    """The config whose mapping decides, and a phrase saying which it is."""
    alembic_config = op.get_context().config
    given = alembic_config.attributes.get("settings") if alembic_config is not None else None
    return (given, "the configured mapping") if isinstance(given, Config) else (Config(), "the default mapping")


def decided(config: Config, row: Any, digest: str) -> NewEvent:
    """The row as intake would record it now; a mapper error is a dead row naming the error's type."""
    try:
        if row.kind in COMPANIONS:
            return _companion(config, row, digest)
        return explain.decide(config, row.payload, row.direction, digest, row.received_at)
    except InvalidEvent as exc:  # an inbound webhook or a companion's event of the wrong shape
        return _decision(row, Status.REJECTED, str(exc), digest)
    except Exception as exc:  # noqa: BLE001 - one row's failure is that row's reason, never the migration's
        return _decision(row, Status.DEAD, f"cannot map the event: {type(exc).__name__}", digest)


def _companion(config: Config, row: Any, digest: str) -> NewEvent:
    found = [d for d in derived(validate(row.payload), outbound_options(config), row.user_key) if d.key == row.key]
    if not found or found[0].call is None:
        reason = found[0].skip if found and found[0].skip else f"its event no longer brings a {row.kind} call"
        return _decision(row, Status.SKIPPED, reason, digest)
    return NewEvent(direction=Direction(row.direction), key=row.key, kind=row.kind, payload={},
                    mapped=found[0].call.frozen(), mapping_digest=digest)


def _decision(row: Any, status: Status, reason: str, digest: str) -> NewEvent:
    return NewEvent(direction=Direction(row.direction), key=row.key, kind=row.kind, payload={}, status=status,
                    reason=reason, mapping_digest=digest)


def unmapped(conn: sa.Connection) -> Iterator[Sequence[Any]]:
    """The rows to decide, ``CHUNK`` at a time in id order."""
    # SQL NULL: recorded before revision 0004; JSON null: recorded without a call (rejected or skipped) and
    # requeued as recorded since
    no_call = sa.or_(events.c.mapped.is_(None), sa.cast(events.c.mapped, sa.Text()) == "null")
    not_forgotten = sa.or_(events.c.user_key.is_(None), sa.not_(events.c.user_key.startswith("forgotten:")))
    statuses = [Status.PENDING.value, Status.DEAD.value, Status.DELIVERED.value]
    after = 0
    while True:
        chunk = conn.execute(
            sa.select(events.c.id, events.c.direction, events.c.key, events.c.kind, events.c.user_key,
                      events.c.status, events.c.payload, events.c.received_at)
            .where(events.c.id > after, no_call, events.c.status.in_(statuses), not_forgotten)
            .order_by(events.c.id).limit(CHUNK)).all()
        if not chunk:
            return
        yield chunk
        after = chunk[-1].id


class Changes:
    """One chunk's updates: calls to freeze, pending rows settled otherwise, and their history entries.
    (A plain class: Alembic loads this module outside ``sys.modules``, where a dataclass cannot be built.)"""

    def __init__(self, *, which: str, digest: str, now: datetime) -> None:
        self.which, self.digest, self.now = which, digest, now  # which: "the configured mapping" or the default
        self.frozen: list[dict[str, Any]] = []
        self.settled: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []

    def add(self, row: Any, decision: NewEvent) -> None:
        if decision.status is Status.PENDING and decision.mapped is not None:
            self.frozen.append({"row_id": row.id, "mapped": decision.mapped, "digest": self.digest})
            if row.status != Status.DELIVERED:
                self.note(row.id, "its call is frozen" + ("" if row.status == Status.PENDING else
                                                           " (the row stays dead; `ledger retry` sends that call)"))
        elif row.status == Status.PENDING:
            reason = decision.reason or ""
            self.settled.append({"row_id": row.id, "status": decision.status.value, "reason": reason,
                                 "cls": reason_class(reason), "digest": self.digest})
            self.note(row.id, f"{decision.status.value}: {reason}")
        # a dead or delivered row the mapping gives no call stays as it was

    def note(self, row_id: int, became: str) -> None:
        detail = (f"recorded before the mapping was stored; decided when the ledger was migrated (revision 0009) "
                  f"under {self.which} {self.digest[:12]}: {became}")
        self.notes.append({"event_id": row_id, "at": self.now, "outcome": "redecided",
                           "detail": detail[:DETAIL_CHARS]})


def upgrade() -> None:
    config, which = settings()
    digest = mapping_digest(config)
    conn, now = op.get_bind(), datetime.now(UTC)
    by_id = events.c.id == sa.bindparam("row_id")
    # a frozen call changes no status: ``updated_at`` stays (retention and the console's recent views read it)
    freeze = events.update().where(by_id).values(mapped=sa.bindparam("mapped"), mapping_digest=sa.bindparam("digest"))
    settle = events.update().where(by_id).values(
        status=sa.bindparam("status"), reason=sa.bindparam("reason"), reason_class=sa.bindparam("cls"),
        mapping_digest=sa.bindparam("digest"), updated_at=now)
    for chunk in unmapped(conn):
        changes = Changes(which=which, digest=digest, now=now)
        for row in chunk:
            changes.add(row, decided(config, row, digest))
        for statement, values in ((freeze, changes.frozen), (settle, changes.settled),
                                  (attempts.insert(), changes.notes)):
            if values:
                conn.execute(statement, values)


def downgrade() -> None:
    """Nothing to undo: a frozen call is what revision 0008's code sends as well."""
