"""Commands of SPEC section 15: the webhook drift check of ``check-config``, and ``ledger replay``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.config import Config
from sync.model import Direction, Row

if TYPE_CHECKING:  # the parser is built for every command: the I/O libraries load only in these commands
    import aiohttp

    from sync.engine.worker import Sink
    from sync.ledger.replays import ReplayFilter
    from sync.ledger.store import Ledger
    from sync.metrics import Metrics
    from sync.replay import Progress


async def check_webhook(config: Config) -> int:
    """Print whether Iterable's system webhook points at ``server.public_url`` as ``[inbound]`` expects;
    0 when it does, 1 when it drifted or Iterable could not be asked."""
    import aiohttp

    from sync.app import iterable_client
    from sync.errors import RetryableUpstream
    from sync.inbound import drift as webhook_drift
    from sync.metrics import Metrics

    async with aiohttp.ClientSession() as session:
        try:
            report = await webhook_drift.check(iterable_client(config, session, Metrics()), config, datetime.now(UTC))
        except RetryableUpstream as exc:
            print(f"webhook: cannot read Iterable's webhooks ({exc}); the drift check did not run")
            return 1
    where = f"webhook {report.webhook_id}" if report.webhook_id is not None else "webhook"
    print(f"{where}: {'OK' if report.ok else 'DRIFTED'}: Iterable's system webhook for {report.expected}")
    for problem in report.problems:
        print(f"  - {problem}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0 if report.ok else 1


# -- ledger replay --------------------------------------------------------------------------------


def replay_parser(actions: Any) -> argparse.ArgumentParser:
    """``ledger replay (--since ISO [--until ISO]) [--direction D] [--person ID] [--event NAME] [--dry-run]``."""
    from sync.cli import moment

    replay: argparse.ArgumentParser = actions.add_parser("replay", help="send delivered rows again, with their original ids")
    replay.add_argument("--since", required=True, type=moment, help="ISO-8601: rows received at or after")
    replay.add_argument("--until", type=moment, help="ISO-8601: rows received before (default: now)")
    replay.add_argument("--direction", choices=[d.value for d in Direction])
    replay.add_argument("--person", help="only this person's rows (an email or a userId)")
    replay.add_argument("--event", help="only this event (a track's event name, an Iterable eventName, or a type)")
    replay.add_argument("--dry-run", action="store_true", help="print how many rows and a sample; send nothing")
    return replay


def replay_sinks(config: Config, session: aiohttp.ClientSession, metrics: Metrics,
                 ledger: Ledger) -> dict[Direction, Sink]:
    """The sinks a replay sends through, one per enabled direction, paced as delivery is (PostgreSQL: the
    pacing every replica shares). Iterable's two-queue settle wait is off: the rows were delivered long ago."""
    from sync.app import iterable_client
    from sync.iterable.sink import IterableSink
    from sync.segment.sink import SegmentSink

    sinks: dict[Direction, Sink] = {}
    if config.outbound.enabled:
        sinks[Direction.OUTBOUND] = IterableSink(iterable_client(config, session, metrics, ledger), settle_seconds=0)
    if config.inbound.enabled:
        sinks[Direction.INBOUND] = SegmentSink(write_key=config.segment.write_key, host=config.segment.host,
                                               metrics=metrics)
    return sinks


def filter_of(args: argparse.Namespace, now: datetime) -> ReplayFilter:
    from sync.ledger.replays import ReplayFilter

    return ReplayFilter(since=args.since, until=args.until or now,
                        direction=Direction(args.direction) if args.direction else None,
                        person=args.person or None, event=args.event or None)


def describe(row: Row) -> str:
    """A sample line: no personal data (the key is the event's id; the person is not shown)."""
    name = row.payload.get("event") if row.direction is Direction.OUTBOUND else None
    return (f"  #{row.id} {row.direction.value} {name or row.kind} id={row.key[:64]} "
            f"received {row.received_at.isoformat(timespec='seconds')}")


async def replay(config: Config, ledger: Ledger, args: argparse.Namespace) -> int:
    """``ledger replay``: 0 when every selected row was sent again, 1 when some were not, 2 on bad usage."""
    import aiohttp

    from sync.metrics import Metrics
    from sync.replay import Replayer

    wanted = filter_of(args, datetime.now(UTC))
    if wanted.until is not None and wanted.since >= wanted.until:
        print("error: --since must be before --until", file=sys.stderr)
        return 2
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        sinks = replay_sinks(config, session, metrics, ledger)
        try:
            replayer = Replayer(ledger, sinks, retention_days=config.ledger.retention_days)
            if args.dry_run:
                count, sample = await replayer.preview(wanted)
                print(f"dry run: {count} delivered rows would be sent again with their original ids")
                for row in sample:
                    print(describe(row))
                return 0
            progress = await replayer.run(wanted, report=_progress_line)
        finally:
            for sink in sinks.values():
                getattr(sink, "close", lambda: None)()
    print(f"{progress.run}: sent {progress.sent} rows again with their original ids; {progress.failed} failed")
    for reason in progress.reasons:
        print(f"  - {reason}")
    return 0 if progress.failed == 0 else 1


def _progress_line(progress: Progress) -> None:
    if progress.done:
        print(f"replayed {progress.done} rows ({progress.sent} sent, {progress.failed} failed)", file=sys.stderr,
              flush=True)
