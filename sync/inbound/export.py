"""Pulling Iterable's export API through the inbound pipeline: the ``backfill`` command and the
scheduled reconciliation. Export rows become webhook-shaped events, so ones already received by
webhook dedupe on the inbound key."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.engine.intake import Intake, inbound_row
from sync.errors import AuthRejected, InvalidEvent, RequestRejected, RetryableUpstream, UpstreamError
from sync.inbound.mapper import SPEC_MAPPING
from sync.iterable import api
from sync.iterable.client import IterableClient
from sync.ledger.store import Ledger
from sync.mapping.rules import InboundMapping
from sync.model import NewEvent, Status
from sync.wire import strict_loads

log = logging.getLogger("sync.inbound.export")

EXPORT = api.EXPORT
EXPORT_TIME = "%Y-%m-%d %H:%M:%S"
RECORD_BATCH = 500
MAX_TRIES = 6
_NOT_FIELDS = ("itblInternal", "_type")

EXPORT_TYPES = api.EXPORT_TYPES


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    invalid: int = 0
    slices_done: int = 0
    slices_total: int = 0

    def add(self, other: Progress) -> Progress:
        return replace(self, fetched=self.fetched + other.fetched, new=self.new + other.new,
                       duplicates=self.duplicates + other.duplicates, invalid=self.invalid + other.invalid)


def as_webhook(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """An export record in the shape of a system webhook (``email``, ``userId``, ``eventName``, ``dataFields``).

    A record's own fields (``createdAt``, ``eventName``, ``messageId``, campaign and template) are at its top
    level; a custom event's or a purchase's fields are nested in its ``dataFields``. Both go into the webhook's
    ``dataFields``, the record's own fields winning a clash (a custom field named ``createdAt`` does not
    move the event's time). Keeping only the nested ones lost the time (the event took the run's "now"), the
    custom event's name and its message, and two custom events of one person merged."""
    top = {k: v for k, v in record.items() if k not in _NOT_FIELDS and k != "dataFields"}
    nested = record.get("dataFields")
    data = {**{k: v for k, v in nested.items() if k not in _NOT_FIELDS}, **top} if isinstance(nested, dict) else top
    webhook: dict[str, Any] = {"eventName": kind, "dataFields": data}
    for name in ("email", "userId"):
        if record.get(name) is not None:
            webhook[name] = record[name]
    return webhook


def slices(since: datetime, until: datetime, hours: float) -> list[tuple[datetime, datetime]]:
    """Consecutive windows covering [since, until), each at most ``hours`` long. Raises ValueError unless
    ``hours`` is a positive number (a window of no length would never end)."""
    if not hours > 0 or hours == float("inf"):
        raise ValueError(f"a window must last a positive, finite number of hours, not {hours!r}")
    step, out, start = timedelta(hours=hours), [], since
    while start < until:
        end = start + min(step, until - start)  # never past until: start + step may leave datetime's years
        out.append((start, end))
        start = end
    return out


def cursor_name(kind: str, since: datetime, until: datetime | None) -> str:
    """Where a run's progress is kept: named after the command as typed (``until`` None: "until now"),
    so running the same command again resumes it."""
    end = until.isoformat() if until else "now"
    digest = hashlib.sha1(f"{kind}|{since.isoformat()}|{end}".encode()).hexdigest()[:16]
    return f"backfill:{kind}:{digest}"


class ExportPuller:
    """Reads export windows and records their rows; respects 429s and the configured 4/minute."""

    def __init__(self, client: IterableClient, intake: Intake, ledger: Ledger, *, event_names: str,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, mapping: InboundMapping = SPEC_MAPPING,
                 digest: str | None = None) -> None:
        self.client, self.intake, self.ledger = client, intake, ledger
        self.event_names, self.sleep = event_names, sleep
        self.mapping, self.digest = mapping, digest

    async def run(self, kinds: Sequence[str], since: datetime, until: datetime, *, slice_hours: float = 24.0,
                  resume: bool = True, open_ended: bool = False,
                  report: Callable[[str, Progress], None] = lambda kind, p: None) -> Progress:
        """Pull every window of every kind; with ``resume``, carry on after the windows a previous
        run of the same command finished (``open_ended``: the command named no end, it ran "until now")."""
        windows = slices(since, until, slice_hours)
        total = Progress(slices_total=len(windows) * len(kinds))
        for kind in kinds:
            name = cursor_name(kind, since, None if open_ended else until)
            done = await self._resume_point(name, since) if resume else since
            for start, end in windows:
                if end > done:  # a window the earlier run did not finish (or finished only in part)
                    total = total.add(await self.pull(kind, max(start, done), end))
                    if resume:
                        await self.ledger.set_cursor(name, end.isoformat(), datetime.now(UTC))
                total = replace(total, slices_done=total.slices_done + 1)
                report(kind, total)
        return total

    async def _resume_point(self, name: str, since: datetime) -> datetime:
        done_until = await self.ledger.cursor(name)
        return max(since, datetime.fromisoformat(done_until)) if done_until else since

    async def pull(self, kind: str, start: datetime, end: datetime) -> Progress:
        raw = await self._fetch(kind, start, end)
        rows: list[NewEvent] = []
        invalid = fetched = 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            fetched += 1
            try:
                record = strict_loads(line)
                rows.append(inbound_row(as_webhook(kind, record), event_names=self.event_names,
                                        now=datetime.now(UTC), mapping=self.mapping, digest=self.digest))
            except (ValueError, RecursionError, InvalidEvent, AttributeError, TypeError):
                invalid += 1
        seen: set[str] = set()
        for at in range(0, len(rows), RECORD_BATCH):
            seen |= await self.intake.record(rows[at:at + RECORD_BATCH])
        recorded = [row for row in rows if row.key not in seen]
        rejected = sum(row.status is Status.REJECTED for row in recorded)  # kept as rejected rows, with the reason
        return Progress(fetched=fetched, new=len(recorded) - rejected, duplicates=len(rows) - len(recorded),
                        invalid=invalid + rejected)

    async def _fetch(self, kind: str, start: datetime, end: datetime) -> bytes:
        params = {"dataTypeName": kind, "startDateTime": start.astimezone(UTC).strftime(EXPORT_TIME),
                  "endDateTime": end.astimezone(UTC).strftime(EXPORT_TIME)}
        for attempt in range(1, MAX_TRIES + 1):
            try:
                status, raw, retry_after = await self.client.get(EXPORT, params)
            except RetryableUpstream as exc:
                status, raw, retry_after, error = 0, b"", exc.retry_after, str(exc)
            else:
                error = f"HTTP {status}: {raw[:200].decode(errors='replace')}"
            if 200 <= status < 300:
                return raw
            if status in (401, 403):
                raise AuthRejected(f"Iterable export refused the API key ({error})", status=status)
            if status and not api.retryable(status):
                raise RequestRejected(f"Iterable export rejected {kind} {params['startDateTime']}: {error}",
                                      status=status)
            wait = retry_after if retry_after is not None else (60.0 if status == 429 else 5.0 * 2 ** attempt)
            log.warning("export request failed; waiting", extra={"kind": kind, "error": error, "wait": wait})
            await self.sleep(wait)
        raise UpstreamError(f"Iterable export for {kind} kept failing after {MAX_TRIES} tries: {error}")
