"""Commands (SPEC sections 1 and 7). Exit codes: 0 success or clean stop, 1 bad config or failure
(the message names the cause), 2 usage error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync import config as config_module
from sync import logs, people
from sync.config import Config
from sync.errors import ConfigError, LedgerNotMigrated, SyncError
from sync.iterable.api import EXPORT_TYPES
from sync.model import EARLIEST, LATEST, Direction, Status, named_time

if TYPE_CHECKING:  # a command imports what only it needs: each one starts as a process of its own
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sync.inbound.export import Progress
    from sync.ledger.store import Ledger


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="iterable-sync", description="Two-way Segment <-> Iterable sync daemon")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", default=os.environ.get("SYNC_CONFIG"),
                         help="TOML config file (default: $SYNC_CONFIG)")
        return sub

    serve = command("serve", "run the daemon")
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    command("migrate", "apply ledger migrations")
    check = command("check-config", "validate a config file")
    check.add_argument("--try", dest="trial", metavar="EVENT.json",
                       help="print the call the daemon would make for this event, or why it would not send it")
    check.add_argument("--direction", choices=[d.value for d in Direction], default="outbound",
                       help="with --try: a Segment event (outbound) or an Iterable webhook (inbound)")
    forget = command("forget", "forget one person: the ledger keeps no personal data of theirs")
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", type=user_id, help="the person's Segment userId")
    who.add_argument("--email", type=email, help="the person's email")
    forget.add_argument("--upstream", action="store_true",
                        help="also delete (or forget, per outbound.deletion) the user in Iterable")
    ledger = command("ledger", "inspect and operate the ledger")
    actions = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="counts by direction and status")
    stats.add_argument("--json", action="store_true")
    listing = actions.add_parser("list", help="rows of one status, with reasons")
    listing.add_argument("--status", required=True, choices=[s.value for s in Status])
    listing.add_argument("--direction", choices=[d.value for d in Direction])
    listing.add_argument("--limit", type=row_count, default=50, help="at most this many rows (at least 1; default 50)")
    listing.add_argument("--json", action="store_true")
    retry = actions.add_parser("retry", help="requeue rows as pending")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--status", choices=[Status.DEAD.value, Status.REJECTED.value, Status.SKIPPED.value])
    which.add_argument("--id", type=row_id, nargs="+", dest="ids")
    retry.add_argument("--direction", choices=[d.value for d in Direction])
    retry.add_argument("--remap", action="store_true",
                       help="decide the rows again under the current mapping config (instead of as recorded)")
    retry.add_argument("--force", action="store_true",
                       help="with --remap: also re-route rows whose last try's outcome is unknown")
    backfill = command("backfill", "pull Iterable's export API for a window into the inbound pipeline")
    backfill.add_argument("--since", required=True, type=moment, help="ISO-8601 start (inclusive)")
    backfill.add_argument("--until", type=moment, help="ISO-8601 end (exclusive; default: now)")
    backfill.add_argument("--types", type=export_types, help="comma-separated export types "
                          "(default: reconcile.event_types)")
    backfill.add_argument("--slice-hours", type=slice_hours, default=24.0,
                          help="window per export request, in hours (at least one minute; default 24)")
    backfill.add_argument("--restart", action="store_true", help="ignore the progress of an earlier run")
    purge = actions.add_parser("purge", help="delete terminal rows older than a duration")
    purge.add_argument("--older-than", required=True, type=age, help="e.g. 30d, 12h, 90m")
    purge.add_argument("--below-retention", action="store_true",
                       help="allow a duration under ledger.retention_days (duplicates of those events will no "
                            "longer be recognised)")
    from sync.guard_commands import replay_parser

    replay = replay_parser(actions)
    for sub in (stats, listing, retry, purge, replay):
        sub.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return root


BIGINT = 2**63 - 1  # ids and counts go to the ledger as 64-bit integers (PostgreSQL's BIGINT, SQLite's INTEGER)
LONGEST = LATEST - EARLIEST  # no window or age is longer than the times a command can name


def _whole(text: str, what: str, example: str) -> int:
    """A whole number from 1 to ``BIGINT``; ``what`` and ``example`` say what was expected."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= BIGINT:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {what}, a whole number from 1 to {BIGINT} "
                                         f"(e.g. {example})")
    return number


def row_id(text: str) -> int:
    """``ledger retry --id``: a row id (ids start at 1)."""
    return _whole(text, "a row id", "42")


def row_count(text: str) -> int:
    """``ledger list --limit``: how many rows at most; 0 or less would list nothing (SQLite took -1 for all)."""
    return _whole(text, "a number of rows", "50")


def slice_hours(text: str) -> float:
    """``--slice-hours``: a finite number of hours, at least one minute (0 or less would never end a window)
    and at most the span of the times a command can name (longer is one window anyway)."""
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of hours (e.g. 24)") from None
    if not 1 / 60 <= hours <= LONGEST / timedelta(hours=1):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of hours of at least one minute and at most "
                                         f"{LONGEST / timedelta(hours=1):.0f} (e.g. 24)")
    return hours


@dataclass(frozen=True, slots=True, kw_only=True)
class Age:
    """``ledger purge --older-than``: as typed (``30d``, to echo it) and as a span."""

    text: str
    span: timedelta


def age(text: str) -> Age:
    """A number and d, h or m, at most the span of the times a command can name (``LONGEST``)."""
    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number and d, h or m (e.g. 30d)")
    size = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}[match.group(2)]
    count = int(match.group(1))
    if count > LONGEST // size:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at most {LONGEST.days}d (the times a command can name "
                                         "run from 1970 to 9000)")
    return Age(text=text.strip(), span=count * size)


def purge_before(now: datetime, older_than: Age) -> datetime:
    """The cut-off of ``ledger purge``: ``older_than`` before ``now``, and no earlier than ``EARLIEST`` (nothing
    the ledger holds is older; the subtraction would leave datetime's years)."""
    return now - min(older_than.span, now - EARLIEST)


def moment(text: str) -> datetime:
    """``--since``, ``--until``: a time in the range the console's replay form takes too (``named_time``)."""
    try:
        return named_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO-8601 date or date-time between {EARLIEST.year} "
                                         f"and {LATEST.year} (UTC unless it names an offset; e.g. 2026-11-28T09:30)"
                                         ) from None


def user_id(text: str) -> str:
    """``forget --user-id``: a userId, not blank."""
    if people.identifier(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected the person's userId (not blank)")
    return text


def email(text: str) -> str:
    """``forget --email``: an email address."""
    if people.email_identifier(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an email address")
    return text


def export_types(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in EXPORT_TYPES]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown export type(s): {', '.join(unknown) or text!r} "
                                         f"(Iterable's export types: {', '.join(sorted(EXPORT_TYPES))})")
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.config:
        print("error: --config FILE is required (or set SYNC_CONFIG)", file=sys.stderr)
        return 2
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"config {args.config} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    if args.command != "serve":
        logs.setup(fmt="text", level="WARNING", secrets=config_module.secrets(config))
    handlers: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "serve": _serve, "migrate": _migrate, "check-config": _check, "ledger": _ledger, "backfill": _backfill,
        "forget": _forget,
    }
    try:
        return asyncio.run(handlers[args.command](config, args))
    except SyncError as exc:
        print(f"error: {_cause_chain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _cause_chain(exc: BaseException) -> str:
    parts = [str(exc)]
    while exc.__cause__ is not None and len(parts) < 4:
        exc = exc.__cause__
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if text not in parts[-1]:
            parts.append(text)
    return ": ".join(parts)


async def _serve(config: Config, args: argparse.Namespace) -> int:
    from sync import app as daemon

    logs.setup(fmt=args.log_format, level=args.log_level, secrets=config_module.secrets(config))
    return await daemon.serve(config)


def _engine(config: Config, *, create: bool = False) -> AsyncEngine:
    """The ledger's engine. A SQLite ledger's folder is made when the command may ``create`` the ledger
    (``migrate``, ``backfill``, as ``serve`` does); otherwise a missing file is refused naming it (opening it
    would leave an empty database behind and report its schema missing)."""
    from sync.app import sqlite_path
    from sync.ledger.store import create_engine
    from sync.ledger.timeouts import DatabaseTimeouts

    path = sqlite_path(config.ledger.url)
    if path is not None and not path.exists():
        if not create:
            raise LedgerNotMigrated(f"no ledger at {path} (ledger.url): run `python -m sync migrate --config FILE` "
                                    "first (serve does it at start)")
        path.parent.mkdir(parents=True, exist_ok=True)
    return create_engine(config.ledger.url, DatabaseTimeouts.of(config.ledger))


async def _migrate(config: Config, args: argparse.Namespace) -> int:
    from sync.ledger import migrate as migrations

    engine = _engine(config, create=True)
    try:
        await migrations.upgrade(engine, config)
        print(f"ledger migrated to {migrations.head_revision()}")
    finally:
        await engine.dispose()
    return 0


async def _check(config: Config, args: argparse.Namespace) -> int:
    if args.trial:
        return _try(config, args.trial, args.direction)
    enabled = [name for name, on in (("outbound", config.outbound.enabled), ("inbound", config.inbound.enabled)) if on]
    print(f"config {args.config} is valid (directions: {', '.join(enabled) or 'none'})")
    print(f"mapping digest {config_module.mapping_digest(config)}")
    for line in setup_notes(config):
        print(line)
    if config.server.public_url and config.inbound.enabled:  # the webhook drift check (SPEC section 15)
        from sync.guard_commands import check_webhook

        return await check_webhook(config)
    return 0


def _try(config: Config, path: str, direction: str) -> int:
    """``check-config --try``: the decision for one event, as the daemon would take it now."""
    from sync.engine import explain
    from sync.wire import strict_loads

    try:
        payload = strict_loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        print(f"error: {path}: cannot read a JSON event: {exc}", file=sys.stderr)
        return 2
    digest = config_module.mapping_digest(config)
    try:
        decided = explain.decide_all(config, payload, direction, digest, datetime.now(UTC))
    except SyncError as exc:  # an inbound webhook of the wrong shape
        print(f"rejected: {exc}")
        return 0
    print("\n\n".join(explain.describe(row, config.outbound.mapping) for row in decided))  # each call the daemon would make, in order
    for line in explain.consent_notes(config, payload, decided[0]):
        print(line)
    return 0


def setup_notes(config: Config) -> list[str]:
    """What a valid config cannot prove: where events go, and how to see that they arrive."""
    notes = []
    if config.outbound.enabled:
        notes.append(f"outbound: Iterable at {config.iterable.api_url} ({config.iterable.project_type} project); "
                     "a wrong API key pauses outbound and /readyz says so")
    if config.inbound.enabled:
        region = "EU" if "eu1" in config.segment.host else "US"
        notes.append(f"inbound: Segment at {config.segment.host} ({region} region). Segment answers 200 even for "
                     "a write key of another region or workspace and then drops the events: after the first "
                     "inbound event, find it in the Segment source's Debugger (an 'Email Opened'-style track with "
                     "context.integration.name = iterable); if it is not there, check segment.write_key and "
                     "segment.host (EU workspaces: https://events.eu1.segmentapis.com)")
        notes.append("inbound: reconciliation from Iterable's export API is "
                     + ("on" if config.reconcile.enabled else "OFF: webhooks refused during a restart are lost "
                        "unless you run `backfill`"))
    return notes


async def _ledger(config: Config, args: argparse.Namespace) -> int:
    from sync.ledger import migrate as migrations
    from sync.ledger.store import Ledger

    refusal = _purge_refusal(config, args) if args.action == "purge" else None
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    engine = _engine(config)
    try:
        await migrations.ensure_current(engine)
        ledger = Ledger(engine)
        now = datetime.now(UTC)
        if args.action == "stats":
            return _print_stats(await ledger.stats(), now, as_json=args.json)
        if args.action == "list":
            rows = await ledger.rows(status=Status(args.status), direction=_direction(args), limit=args.limit)
            return _print_rows(rows, as_json=args.json)
        if args.action == "replay":  # SPEC section 15
            from sync.guard_commands import replay

            return await replay(config, ledger, args)
        if args.action == "retry":
            return await _retry(config, ledger, args, now)
        count = await ledger.purge(purge_before(now, args.older_than))
        print(f"purged {count} terminal rows older than {args.older_than.text}")
        return 0
    finally:
        await engine.dispose()


def _purge_refusal(config: Config, args: argparse.Namespace) -> str | None:
    """Why ``ledger purge`` refuses its ``--older-than`` (under ``ledger.retention_days``), or None."""
    days = config.ledger.retention_days
    if args.below_retention or args.older_than.span >= timedelta(days=days):
        return None
    return (f"--older-than {args.older_than.text} is under ledger.retention_days ({days}d): the ledger recognises "
            "a duplicate only while it keeps the row, so a client's retry of a purged event would be sent again. "
            "Pass --below-retention to purge anyway.")


async def _forget(config: Config, args: argparse.Namespace) -> int:
    """``forget``: tombstones for the person's rows; with ``--upstream`` a deletion for Iterable too."""
    from sync.engine.intake import Intake, outbound_options, outbound_row
    from sync.ledger import migrate as migrations
    from sync.ledger.store import Ledger
    from sync.metrics import Metrics
    from sync.segment.spec import validate

    identifier = people.identifier(args.user_id) if args.user_id else people.email_identifier(args.email)
    assert identifier is not None  # the parser takes only a userId or an email that names someone
    engine = _engine(config)
    try:
        await migrations.ensure_current(engine)
        ledger, now = Ledger(engine), datetime.now(UTC)
        # the userId linked to an email, read before the forget removes the link: Iterable deletes by userId
        known = (await ledger.people_known([identifier])).get(identifier) if args.upstream and args.email else None
        count = await ledger.forget(identifier, now)
        print(f"forgot {count} rows of that person: their payloads are tombstones now")
        if args.upstream:
            event = validate(deletion(args.user_id or (known.user_id if known else None),
                                      None if args.user_id else people.normal_email(args.email)))
            row = outbound_row(event, outbound_options(config), config_module.mapping_digest(config))
            await Intake(ledger, Metrics()).record([row])
            sent = "queued for Iterable (the serving daemon sends it)" if row.status is Status.PENDING else \
                f"not sent: {row.reason}"
            print(f"deletion {event['messageId']} {sent}")
        return 0
    finally:
        await engine.dispose()


def deletion(user_id: str | None, email: str | None) -> dict[str, Any]:
    """The Segment deletion ``forget --upstream`` records: by the userId when one is known (given, or linked to
    the email), else by the email (Iterable's ``DELETE /api/users/{email}``). The email once went as a userId
    (``DELETE /api/users/byUserId/ann@example.com``), which Iterable answers "does not exist", taken for done."""
    event: dict[str, Any] = {"type": "delete"}
    if user_id:
        event["userId"] = user_id
    if email:
        event["context"] = {"traits": {"email": email}}
    return event


async def _backfill(config: Config, args: argparse.Namespace) -> int:
    import aiohttp

    from sync.app import iterable_client
    from sync.engine.intake import Intake, people_rules
    from sync.inbound.export import ExportPuller
    from sync.ledger import migrate as migrations
    from sync.ledger.store import Ledger
    from sync.metrics import Metrics

    until = args.until or datetime.now(UTC)
    if args.since >= until:
        print("error: --since must be before --until", file=sys.stderr)
        return 2
    kinds = args.types or config.reconcile.event_types
    engine = _engine(config, create=True)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    reporter = ProgressLine(sys.stderr)
    try:
        await migrations.upgrade(engine, config)
        ledger, metrics = Ledger(engine), Metrics()
        async with aiohttp.ClientSession() as session:
            intake = Intake(ledger, metrics, **people_rules(config))
            puller = ExportPuller(iterable_client(config, session, metrics, ledger), intake, ledger,
                                  event_names=config.inbound.event_names, mapping=config.inbound.mapping,
                                  digest=config_module.mapping_digest(config))
            print(f"backfill {', '.join(kinds)} from {args.since.isoformat()} to {until.isoformat()}",
                  file=sys.stderr)
            total = await puller.run(kinds, args.since, until, slice_hours=args.slice_hours,
                                     resume=not args.restart, open_ended=args.until is None,
                                     report=reporter.show)
    except asyncio.CancelledError:
        reporter.close()
        print("interrupted: progress is saved; run the same command again to resume", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    reporter.close()
    print(f"backfill done: {total.slices_done} windows, fetched {total.fetched}, new {total.new}, "
          f"duplicates {total.duplicates}, invalid {total.invalid}")
    return 0


class ProgressLine:
    """One updating line on a terminal; one line per window otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.tty, self.shown = stream, stream.isatty(), False

    def show(self, kind: str, progress: Progress) -> None:
        text = (f"[{progress.slices_done}/{progress.slices_total}] {kind} window done; all types so far: "
                f"fetched {progress.fetched}, new {progress.new}, duplicates {progress.duplicates}, "
                f"invalid {progress.invalid}")
        self.stream.write(f"\r\033[K{text}" if self.tty else f"{text}\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")


def _direction(args: argparse.Namespace) -> Direction | None:
    return Direction(args.direction) if getattr(args, "direction", None) else None


async def _retry(config: Config, ledger: Ledger, args: argparse.Namespace, now: datetime) -> int:
    """``ledger retry``: dead rows sent again as recorded; rejected and skipped rows (and every row with
    ``--remap``) decided again under the current mapping (``sync.requeue``, the console's rule too)."""
    from sync import requeue
    from sync.ledger.browse import RowFilter

    digest = config_module.mapping_digest(config)
    wanted = RowFilter(status=Status(args.status), direction=_direction(args)) if args.status else None
    left = await requeue.not_taken(ledger, args.ids, _direction(args)) if args.ids else []  # before the retry
    rows = requeue.matching(ledger, wanted, args.ids or (), direction=_direction(args))
    outcome = await requeue.retry(ledger, config, digest, rows, now, remap_all=args.remap, force=args.force)
    if outcome.requeued or not outcome.redecided:
        print(f"requeued {outcome.requeued} rows as pending")
    if outcome.redecided:
        tally = ", ".join(f"{n} {s}" for s, n in sorted(outcome.redecided.items()))
        print(f"re-mapped {sum(outcome.redecided.values())} rows under mapping {digest[:12]} ({tally})")
    for reason in outcome.refused:
        print(f"refused: {reason}", file=sys.stderr)
    for reason in left:
        print(f"not requeued: {reason}", file=sys.stderr)
    return 1 if outcome.refused or left else 0


def _print_stats(stats: Any, now: datetime, *, as_json: bool) -> int:
    table = {d.value: {s.value: stats.counts.get((d.value, s.value), 0) for s in Status} for d in Direction}
    oldest = {d: round((now - t).total_seconds(), 1) for d, t in stats.oldest_pending.items()}
    if as_json:
        print(json.dumps({"counts": table, "oldest_pending_seconds": oldest, "paused": stats.paused}))
        return 0
    print(f"{'direction':<10}" + "".join(f"{s.value:>11}" for s in Status) + f"{'oldest pending':>17}")
    for direction, counts in table.items():
        age = f"{oldest[direction]:.0f}s" if direction in oldest else "-"
        print(f"{direction:<10}" + "".join(f"{n:>11}" for n in counts.values()) + f"{age:>17}")
    for direction, reason in stats.paused.items():
        print(f"PAUSED {direction}: {reason}")
    return 0


def _print_rows(rows: Sequence[Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([{"id": r.id, "direction": r.direction.value, "key": r.key, "kind": r.kind,
                           "status": r.status.value, "attempts": r.attempts, "reason": r.reason,
                           "last_error": r.last_error, "received_at": r.received_at.isoformat(),
                           "payload": r.payload, "forgotten": bool(r.payload.get("forgotten"))} for r in rows]))
        return 0
    print(f"{'id':>8}  {'direction':<9} {'kind':<22} {'attempts':>8}  {'received':<20} reason")
    for r in rows:
        reason = ("[forgotten] " if r.payload.get("forgotten") else "") + (r.reason or r.last_error or "")[:80]
        print(f"{r.id:>8}  {r.direction.value:<9} {r.kind[:22]:<22} {r.attempts:>8}  "
              f"{r.received_at:%Y-%m-%d %H:%M:%S}  {reason}")
    print(f"({len(rows)} rows)")
    return 0
