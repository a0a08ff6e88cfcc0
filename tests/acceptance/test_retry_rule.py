"""``ledger retry`` applies the console's rule (``sync.requeue``): a rejected or skipped row is decided again
under the current mapping, never requeued as it was (which made it die with ``KeyError('type')``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from sync.ledger.schema import attempts
from sync.ledger.store import Ledger
from sync.model import Direction, NewEvent, Status
from tests.acceptance.test_commands import cli, write_config


async def test_ledger_retry_decides_rejected_and_skipped_rows_again(tmp_path: Path, ledger: Ledger,
                                                                    ledger_url: str) -> None:
    now = datetime.now(UTC)
    await ledger.record([
        NewEvent(direction=Direction.OUTBOUND, key="untyped", kind="unknown", status=Status.REJECTED,
                 payload={"userId": "r1", "event": "No Type", "messageId": "untyped"}, reason="type: required"),
        NewEvent(direction=Direction.OUTBOUND, key="grp", kind="group", status=Status.SKIPPED,
                 payload={"type": "group", "userId": "r1", "groupId": "g", "messageId": "grp"},
                 reason="group is not supported by Iterable")], now)
    config = str(write_config(tmp_path, ledger_url))
    code, out, err = await cli("ledger", "retry", "--status", "rejected", "--config", config)
    assert (code, err) == (0, "") and out.startswith("re-mapped 1 rows under mapping") and "(1 rejected)" in out
    skipped = await ledger.get(Direction.OUTBOUND, "grp")
    assert skipped is not None
    code, out, _ = await cli("ledger", "retry", "--id", str(skipped.id), "--config", config)
    assert code == 0 and "(1 skipped)" in out
    untyped = await ledger.get(Direction.OUTBOUND, "untyped")
    assert untyped is not None and untyped.status is Status.REJECTED and "type" in (untyped.reason or "")
    assert "KeyError" not in (untyped.reason or "")
    async with ledger.engine.connect() as conn:
        notes = (await conn.execute(sa.select(attempts.c.event_id, attempts.c.outcome, attempts.c.detail)
                                    .order_by(attempts.c.id))).all()
    assert [(n.event_id, n.outcome) for n in notes] == [(untyped.id, "redecided"), (skipped.id, "redecided")]
    assert notes[1].detail.startswith("was skipped; decided again under mapping")
