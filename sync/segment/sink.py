"""The Segment sink: inbound rows become Segment ``track`` calls, built and sent with
``segment-analytics-python``. The library's queue is never used: the ledger is the queue, and a
row is delivered only once ``request.post`` returned for its batch (a 2xx)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from segment.analytics import Client
from segment.analytics import request as segment_request

from sync.engine import retry as schedule
from sync.engine.batches import chunks
from sync.engine.worker import Failure, Results
from sync.inbound import mapper as inbound
from sync.metrics import Metrics
from sync.model import UNDECIDED, Direction, Row
from sync.wire import segment_size

MAX_BATCH_EVENTS = 2500
MAX_BATCH_BYTES = 475_000  # the library's own margin under Segment's 500 KB
RETRYABLE_STATUSES = frozenset({408, 410, 429, 460})
TIMEOUT_SECONDS = 15

Message = tuple[Row, dict[str, Any]]


class SegmentSink:
    direction = Direction.INBOUND
    batch_limit = MAX_BATCH_EVENTS

    def __init__(self, *, write_key: str, host: str, metrics: Metrics, timeout: float = TIMEOUT_SECONDS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.write_key, self.host = write_key, host.rstrip("/")
        self.timeout = timeout
        self.metrics, self.clock = metrics, clock
        self.builder = Client(write_key, host=self.host, send=False)
        # one thread: the library shares a module-level requests.Session
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-post")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def deliver(self, rows: Sequence[Row]) -> Results:
        results = Results()
        messages = [m for m in (self._message(row, results) for row in rows) if m is not None]
        for batch in chunks(messages, max_items=MAX_BATCH_EVENTS, max_bytes=MAX_BATCH_BYTES,
                            size_of=lambda m: segment_size(m[1])):
            if _stop(results):  # the rest of the round goes back untried (not an attempt)
                break
            await self._send(batch, results)
        return results

    def _message(self, row: Row, results: Results) -> Message | None:
        """The Segment message of the track decided at intake (the sink never maps)."""
        if row.mapped is None:
            results.failed.append(Failure(row_id=row.id, error=UNDECIDED, retryable=False))
            return None
        try:
            track = inbound.thawed(row.mapped)
            _, message = self.builder.track(
                user_id=track.user_id, anonymous_id=track.anonymous_id, event=track.event,
                properties=track.properties, context=track.context, integrations=track.integrations,
                timestamp=track.timestamp, message_id=track.message_id)
        except Exception as exc:  # the library's AssertionError or RuntimeError (32 KB)
            results.failed.append(Failure(row_id=row.id, error=f"cannot build Segment message: {exc}",
                                          retryable=False))
            return None
        return (row, message)

    async def _send(self, batch: list[Message], results: Results) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._post, [m for _, m in batch])
        except segment_request.APIError as exc:
            await self._rejected(batch, exc, results)
        except requests.RequestException as exc:
            self._count("error")
            results.called([row.id for row, _ in batch], "v1/batch", None)
            results.failed.extend(Failure(row_id=row.id, error=f"Segment unreachable: {type(exc).__name__}",
                                          retryable=True) for row, _ in batch)
        else:
            results.called([row.id for row, _ in batch], "v1/batch", 200)
            results.delivered.extend(row.id for row, _ in batch)

    def _post(self, messages: list[dict[str, Any]]) -> None:
        try:
            response = segment_request.post(self.write_key, host=self.host, gzip=True, timeout=self.timeout,
                                            batch=messages)
        except segment_request.APIError as exc:
            self._count(str(exc.status))
            raise
        self._count(str(response.status_code))

    def _count(self, status: str) -> None:
        self.metrics.upstream.labels(target="segment", endpoint="v1/batch", status=status).inc()

    async def _rejected(self, batch: list[Message], exc: segment_request.APIError, results: Results) -> None:
        status = int(exc.status) if str(exc.status).isdigit() else 0
        error = f"Segment answered HTTP {exc.status}: {str(exc.message)[:300]}"
        results.called([row.id for row, _ in batch], "v1/batch", status or None)
        if status in (401, 403):
            results.auth_error = error
        elif status in (400, 413) and len(batch) > 1:  # refused as a whole (413: a proxy's size limit, say)
            middle = len(batch) // 2  # find the message Segment refuses: each half on its own
            await self._send(batch[:middle], results)
            if not _stop(results):
                await self._send(batch[middle:], results)
        else:
            retryable = status in RETRYABLE_STATUSES or (status >= 500 and status not in (501, 505))
            response = getattr(exc, "response", None)
            header = response.headers.get("Retry-After") if response is not None else None
            retry_after = schedule.parse_retry_after(header, self.clock())
            results.failed.extend(Failure(row_id=row.id, error=error, retryable=retryable, retry_after=retry_after)
                                  for row, _ in batch)


def _stop(results: Results) -> bool:
    """Whether the round stops here: Segment refused the credentials, or asked to wait (``Retry-After``
    speaks for its whole batch API: the round's other batches went out within milliseconds of a 429)."""
    return bool(results.auth_error or results.retry_after)
