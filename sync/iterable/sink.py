"""The Iterable sink: outbound rows become Iterable API requests, batched and in per-person order.

The rules (waves, reading bulk answers) are pure, in ``sync.iterable.bulk``; the HTTP session is
``sync.iterable.client``'s; this module decides what to send and reads the answers."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from sync import masking
from sync.engine.batches import by_person
from sync.engine.worker import Failure, Results
from sync.errors import RetryableUpstream
from sync.iterable import api
from sync.iterable.bulk import (
    GROUPS,
    MAX_BULK_BYTES,
    MAX_BULK_ITEMS,
    Item,
    Plan,
    bulk_failures,
    group_of,
    plan,
    waves,
)
from sync.iterable.client import IterableClient, Reply, encoded
from sync.model import UNDECIDED, Direction, Row, excerpt
from sync.outbound.mapper import BULK_FORM, IterableCall

NOT_FOUND_WINDOW = 15 * 60.0  # a user Iterable cannot see yet is retried this long (it asks for 60 s)
NOT_FOUND_MAX_DELAY = 30.0  # between those tries, so the user's events follow soon after they appear
QUEUE_SETTLE_SECONDS = 60.0  # Iterable asks for a 60 s buffer between a write and dependent calls
UNSENDABLE = (UnicodeEncodeError, RecursionError)  # a stored call that cannot be encoded as JSON for a request


class IterableSink:
    """Delivers outbound rows: users and events in bulk, commerce and email changes singly, each
    person's calls through one of Iterable's two processing queues at a time (``sync.iterable.bulk.plan``)."""

    direction = Direction.OUTBOUND
    batch_limit = 4 * MAX_BULK_ITEMS  # four requests in flight per round: rate x latency at 400 ms

    def __init__(self, client: IterableClient, *, settle_seconds: float = QUEUE_SETTLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.settle_seconds, self.clock = settle_seconds, clock
        self.recent: OrderedDict[str, tuple[str, float]] = OrderedDict()  # person -> (queue, last call)

    async def deliver(self, rows: Sequence[Row]) -> Results:
        results = Results()
        items: list[Item] = []
        for row in rows:
            call = self._call(row, results)
            if call is not None:
                items.append((row, call))
        now = self.clock()
        planned = self._plan(items, now)
        for row_id, wait in planned.held.items():
            results.failed.append(Failure(
                row_id=row_id, retryable=True, wait=wait,
                error=f"waiting {wait:.0f} s for Iterable's bulk queue (this person's earlier writes went through it)"))
        run = DeliveryRound(self.client, results)
        for wave in waves(planned.send, planned.singles):
            for group in GROUPS:
                if results.auth_error:
                    return results
                members = [item for item in wave if group_of(item[1], planned.singles, item[0].id) == group]
                await (run.singles(members) if group == "single" else run.bulk(group, members))
        return results

    def _plan(self, items: Sequence[Item], now: float) -> Plan:
        while self.recent and now - next(iter(self.recent.values()))[1] >= self.settle_seconds:
            self.recent.popitem(last=False)
        planned = plan(items, self.recent, now, self.settle_seconds)
        for person, family in planned.families.items():
            self.recent[person] = (family, now)
            self.recent.move_to_end(person)
        return planned

    def _call(self, row: Row, results: Results) -> IterableCall | None:
        """The call decided at intake: a retry is the same request, whatever the config says now."""
        if row.mapped is None:
            results.failed.append(Failure(row_id=row.id, error=UNDECIDED, retryable=False))
            return None
        return IterableCall.thawed(row.mapped, row.user_key)


def _person(entry: tuple[Item, bytes]) -> str:
    row = entry[0][0]
    return row.user_key or f"row:{row.id}"


def _length(entry: tuple[Item, bytes]) -> int:
    return len(entry[1])


class DeliveryRound:
    """One delivery round: remembers people whose earlier row must be retried first."""

    def __init__(self, client: IterableClient, results: Results) -> None:
        self.client, self.results = client, results
        self.blocked: set[str] = set()

    def _live(self, items: Sequence[Item]) -> list[Item]:
        return [item for item in items if not (item[0].user_key and item[0].user_key in self.blocked)]

    async def bulk(self, endpoint: str, items: Sequence[Item]) -> None:
        """Each item encoded once (its size is its bytes' length, the request body their join); the requests
        of one group go out at once, each person's items in one of them (``batches.by_person``), so Iterable's
        latency does not cap a round at one request per round trip. The throttle still spaces them. People who
        do not fit in full requests are not tried in this round (released; the worker holds their later rows
        back behind them), rather than costing a request of their own."""
        live = []
        for item in self._live(items):
            try:
                live.append((item, encoded(item[1].body)))
            except UNSENDABLE as exc:
                self._unsendable(item, exc)
        parts, left, independent = by_person(live, person=_person, max_items=MAX_BULK_ITEMS,
                                             max_bytes=MAX_BULK_BYTES, size_of=_length)
        self.blocked.update(_person(entry) for entry in left)  # not tried: they go first in a later round
        if independent and len(parts) > 1:
            await asyncio.gather(*(self._bulk_chunk(endpoint, part) for part in parts))
            return
        for part in parts:
            await self._bulk_chunk(endpoint, part)

    async def _bulk_chunk(self, endpoint: str, part: list[tuple[Item, bytes]]) -> None:
        bulk_endpoint, field = BULK_FORM[endpoint]
        chunk = [item for item, _ in part]
        ids = [row.id for row, _ in chunk]
        try:
            reply = await self.client.post_bulk(bulk_endpoint, field, [data for _, data in part],
                                                [call.body for _, call in chunk])
        except RetryableUpstream as exc:
            self.results.called(ids, bulk_endpoint, None)
            for row, call in chunk:
                self._fail(row, call, str(exc), retryable=True, wait=exc.retry_after)
            return
        named = [value for _, call in chunk for value in masking.named_in(call.body)]
        self.results.called(ids, bulk_endpoint, reply.status, masking.mask(excerpt(reply.body), named))
        if 200 <= reply.status < 300:
            await self._bulk_answer(reply, chunk)
        elif reply.status in (400, 413) and len(chunk) > 1:
            # the request as a whole was refused: find the bad items with single calls, whose rate
            # limit is 100x the bulk one, instead of bisecting at the bulk rate
            await self.singles(chunk)
        else:
            self._settle(reply, chunk)

    async def _bulk_answer(self, reply: Reply, chunk: list[Item]) -> None:
        outcome = bulk_failures(reply.body, [call.body for _, call in chunk])
        unsure = []
        for index, (row, call) in enumerate(chunk):
            if index in outcome.failed:
                reason, retryable = outcome.failed[index]
                named_by = reason.removeprefix("Iterable rejected the item: ").split(" ", 1)[0]
                self.results.called([row.id], self.results.calls[row.id].endpoint, reply.status,
                                    masking.mask(excerpt(reply.body, named_by=named_by), masking.named_in(call.body)))
                self._fail(row, call, reason, retryable=retryable, not_found=retryable)
            elif outcome.unmatched:
                unsure.append((row, call))
            else:
                self.results.delivered.append(row.id)
        if unsure:  # Iterable counted failures it did not name: no row is delivered on a guess
            await self.singles(unsure)

    async def singles(self, items: Sequence[Item]) -> None:
        for row, call in items:
            if self.results.auth_error:
                return
            if row.user_key and row.user_key in self.blocked:
                continue
            reply = await self._post(call.endpoint, call.body, [(row, call)], method=call.method, limit=call.limit)
            if reply is not None:
                self._settle(reply, [(row, call)], deletion=call.method == "DELETE")

    async def _post(self, endpoint: str, body: dict[str, Any], chunk: Sequence[Item], *, method: str = "POST",
                    limit: str | None = None) -> Reply | None:
        ids = [row.id for row, _ in chunk]
        try:
            reply = await self.client.post(endpoint, body, method=method, limit=limit)
        except UNSENDABLE as exc:
            for item in chunk:
                self._unsendable(item, exc)
            return None
        except RetryableUpstream as exc:
            self.results.called(ids, limit or endpoint, None)
            for row, call in chunk:
                self._fail(row, call, str(exc), retryable=True, wait=exc.retry_after)
            return None
        # the history names a deletion's endpoint by its label (``users/delete``), not its path with the userId;
        # the answer is stored without the identifiers the call names (it may quote them)
        named = [value for row, call in chunk for value in (*masking.named_in(call.body), *_path_id(call))]
        self.results.called(ids, limit or endpoint, reply.status, masking.mask(excerpt(reply.body), named))
        return reply

    def _settle(self, reply: Reply, chunk: Sequence[Item], *, deletion: bool = False) -> None:
        if 200 <= reply.status < 300 or deletion and (reply.status == 404 or reply.not_found):
            self.results.delivered.extend(row.id for row, _ in chunk)  # deleting a user nobody has: done
        elif reply.status in (401, 403):
            self.results.auth_error = f"Iterable answered {reply.describe()}"
        elif reply.not_found:
            for row, call in chunk:
                self._fail(row, call, reply.describe(), retryable=True, not_found=True)
        else:
            retryable = api.retryable(reply.status)
            for row, call in chunk:
                self._fail(row, call, reply.describe(), retryable=retryable, wait=reply.retry_after)

    def _unsendable(self, item: Item, exc: BaseException) -> None:
        """A stored call no request can carry (an unpaired surrogate recorded before intake refused them):
        that row alone is dead-lettered, instead of failing its whole round again and again."""
        self._fail(item[0], item[1], f"the stored call cannot be encoded as a JSON request ({type(exc).__name__}): "
                   "send a corrected event", retryable=False)

    def _fail(self, row: Row, call: IterableCall, error: str, *, retryable: bool,
              wait: float | None = None, not_found: bool = False) -> None:
        """Record a failure; a user Iterable cannot see yet is retried for NOT_FOUND_WINDOW, not 72 h. ``wait``
        (an endpoint's Retry-After) holds this row and its person only: the client holds that endpoint alone.
        The upstream's message is stored without the person's email or userId (it may quote them)."""
        error = masking.mask(error, [*masking.named_in(call.body), *_path_id(call)])
        window = (NOT_FOUND_WINDOW, NOT_FOUND_MAX_DELAY) if not_found else (None, None)
        self.results.failed.append(Failure(row_id=row.id, error=error, retryable=retryable, wait=wait,
                                           window_seconds=window[0], max_delay=window[1]))
        if retryable and row.user_key:
            self.blocked.add(row.user_key)


def _path_id(call: IterableCall) -> list[str]:
    """The userId a deletion's path names (``users/byUserId/<id>``)."""
    head, _, tail = call.endpoint.rpartition("/")
    return [unquote(tail)] if call.method == "DELETE" and head.endswith("byUserId") and tail else []
