"""How the daemon learns Iterable's field types: ``GET /api/users/getFields`` (hourly, and soon after
Iterable refuses a value for its type) and the items Iterable accepted in its answers (SPEC section 15).

``LearningClient`` is the Iterable client with one more duty: it reads each answer to a users or events
call against what was sent, learns the types accepted values fixed, and notes refusals for their type
(``failedUpdates.invalidData*``, single calls' 400 ``RequestFieldsTypesMismatched``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sync.errors import RetryableUpstream
from sync.iterable.bulk import bulk_failures
from sync.iterable.client import IterableClient, Reply
from sync.iterable.field_types import FieldTypes
from sync.outbound.mapper import BULK_FORM

log = logging.getLogger("sync.iterable.field_types")

GET_FIELDS = "users/getFields"
TYPE_REFUSED = "RequestFieldsTypesMismatched"
REFRESH_AFTER_REFUSAL = 60.0  # at most one extra getFields a minute, however many refusals come
_SINGLE_OF = {bulk: single for single, (bulk, _) in BULK_FORM.items()}


async def refresh(client: IterableClient, types: FieldTypes, now: datetime) -> int:
    """Read getFields into ``types``; returns how many user fields Iterable listed.

    Raises ``RetryableUpstream`` when Iterable does not answer 200 with ``{"fields": {...}}``.
    """
    status, raw, _ = await client.get(GET_FIELDS, {})
    try:
        fields = json.loads(raw).get("fields") if status == 200 else None
    except (ValueError, AttributeError):
        fields = None
    if not isinstance(fields, dict):
        raise RetryableUpstream(f"{GET_FIELDS}: HTTP {status}, no fields in the answer")
    return types.merge_user(fields, now)


class LearningClient(IterableClient):
    """The Iterable client that also learns field types from Iterable's answers (``watch`` turns it on)."""

    types: FieldTypes | None = None
    refusals = 0  # items Iterable refused for a value's type, since start
    _refused_at = -REFRESH_AFTER_REFUSAL
    _on_refusal: Callable[[], object] = staticmethod(lambda: None)

    def watch(self, types: FieldTypes, on_refusal: Callable[[], object]) -> None:
        """Learn into ``types``; call ``on_refusal`` (a getFields refresh) at most once a minute after a refusal."""
        self.types, self._on_refusal = types, on_refusal

    async def post(self, endpoint: str, body: dict[str, Any], *, method: str = "POST",
                   limit: str | None = None) -> Reply:
        reply = await super().post(endpoint, body, method=method, limit=limit)
        if self.types is not None:
            self._read(endpoint, body, reply)
        return reply

    async def post_bulk(self, endpoint: str, field: str, items: Sequence[bytes],
                        values: Sequence[dict[str, Any]]) -> Reply:
        """The bulk body goes out as its items' bytes; the answer is read against the same items as values
        (already decoded: nothing is parsed or encoded again for learning)."""
        reply = await super().post_bulk(endpoint, field, items, values)
        if self.types is not None:
            self._read(endpoint, {field: list(values)}, reply)
        return reply

    def _read(self, endpoint: str, body: dict[str, Any], reply: Reply) -> None:
        assert self.types is not None
        single = _SINGLE_OF.get(endpoint, endpoint)
        items = (body.get(BULK_FORM[single][1]) or []) if endpoint in _SINGLE_OF else [body]
        answer = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 400 and answer.get("code") == TYPE_REFUSED:
            params = answer.get("params")
            errors = params.get("validationErrors") if isinstance(params, dict) else None
            learned = self.types.learn_refusal(errors, items)
            log.warning("Iterable refused values for their fields' types", extra={"fields": learned[:20]})
            self._refused(1)
        elif 200 <= reply.status < 300 and endpoint in _SINGLE_OF:
            outcome = bulk_failures(answer, items)
            created = answer.get("createdFields")
            if isinstance(created, list) and created and not outcome.unmatched:
                for index, item in enumerate(items):
                    if index not in outcome.failed:
                        self.types.learn(single, item, frozenset(map(str, created)))
            self._refused(sum(1 for reason, _ in outcome.failed.values() if "invalidData" in reason))

    def _refused(self, count: int) -> None:
        """Refusals for a type (or invalid data): read getFields again soon (at most once a minute)."""
        if not count:
            return
        self.refusals += count
        if time.monotonic() - self._refused_at >= REFRESH_AFTER_REFUSAL:
            self._refused_at = time.monotonic()
            self._on_refusal()
