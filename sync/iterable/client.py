"""The Iterable client: one persistent HTTP session to Iterable's API, its throttle and its Retry-After holds.

Both directions use it: the outbound sink (``sync.iterable.sink``) posts calls, the export
(``sync.inbound.export``) reads Iterable's events back, the guards read its field types and webhooks."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yarl

from sync.engine import retry as schedule
from sync.engine.throttle import Throttle
from sync.errors import RetryableUpstream
from sync.iterable import api
from sync.iterable.bulk import bulk_body
from sync.metrics import Metrics
from sync.wire import compact


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    body: Any
    retry_after: float | None = None

    def describe(self) -> str:
        body = self.body if isinstance(self.body, dict) else {}
        return f"HTTP {self.status} {body.get('code', '')}: {str(body.get('msg', ''))[:300]}".strip()

    @property
    def not_found(self) -> bool:
        """A single call refused because Iterable cannot see the user yet (creation lags)."""
        body = self.body if isinstance(self.body, dict) else {}
        return self.status == 400 and "does not exist" in str(body.get("msg", "")).lower()


class IterableClient:
    """One persistent aiohttp session to Iterable; network failures become ``RetryableUpstream``."""

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, api_key: str, timeout: float,
                 throttle: Throttle, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.session, self.base_url, self.api_key = session, base_url.rstrip("/"), api_key
        self.timeout, self.throttle, self.metrics, self.clock = aiohttp.ClientTimeout(total=timeout), throttle, metrics, clock
        self.holds: dict[str, float] = {}  # rate-limit bucket -> monotonic time its Retry-After ends

    def held(self, label: str) -> float:
        """Seconds Iterable asked us to keep off this endpoint (its own ``Retry-After``; no other endpoint's)."""
        return max(0.0, self.holds.get(label, 0.0) - time.monotonic())

    async def post(self, endpoint: str, body: dict[str, Any], *, method: str = "POST",
                   limit: str | None = None) -> Reply:
        """A JSON request; ``limit`` names the rate-limit bucket (and the metric label) when the path holds
        an identifier (deletions), so no user id reaches a metric or a log."""
        if method == "DELETE":
            status, raw, retry_after = await self._call(method, endpoint, label=limit)
            return Reply(status=status, body=_json(raw), retry_after=retry_after)
        return await self.post_encoded(endpoint, encoded(body), method=method, limit=limit)

    async def post_bulk(self, endpoint: str, field: str, items: Sequence[bytes],
                        values: Sequence[dict[str, Any]]) -> Reply:
        """A bulk request whose items are already encoded: the body is their join (``bulk.bulk_body``), not a
        second encoding; ``values`` are the same items decoded, for whoever reads the answer against them."""
        return await self.post_encoded(endpoint, bulk_body(field, items))

    async def post_encoded(self, endpoint: str, data: bytes, *, method: str = "POST",
                           limit: str | None = None) -> Reply:
        """A request whose JSON body is already encoded (a bulk body joined from its items' bytes)."""
        # a stream, not bytes: aiohttp writes a large bytes body in one go and warns that it blocks the loop
        status, raw, retry_after = await self._call(method, endpoint, data=io.BytesIO(data), label=limit,
                                                    headers={"Content-Type": "application/json"})
        return Reply(status=status, body=_json(raw), retry_after=retry_after)

    async def get(self, endpoint: str, params: dict[str, str]) -> tuple[int, bytes, float | None]:
        """A throttled GET (the export API); returns status, raw body and any ``Retry-After``."""
        return await self._call("GET", endpoint, params=params)

    async def _call(self, method: str, endpoint: str, *, headers: dict[str, str] | None = None,
                    label: str | None = None, **kwargs: Any) -> tuple[int, bytes, float | None]:
        label = label or endpoint
        if wait := self.held(label):
            raise RetryableUpstream(f"{label}: Iterable asked to wait (Retry-After)", retry_after=wait)
        await self.throttle.acquire(label)
        headers = {"Api-Key": self.api_key, **(headers or {})}
        try:
            # encoded=True: the path is sent as the mapping encoded it (no dot-segment removal, no re-quoting)
            url = yarl.URL(f"{self.base_url}/api/{endpoint}", encoded=True)
            async with self.session.request(method, url, headers=headers,
                                            timeout=self.timeout, **kwargs) as response:
                raw = await response.read()
                retry_after = schedule.parse_retry_after(response.headers.get("Retry-After"), self.clock())
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.upstream.labels(target="iterable", endpoint=label, status="error").inc()
            detail = "" if label != endpoint else f" {str(exc)[:200]}"  # a deletion's path names the user
            raise RetryableUpstream(f"{label}: {type(exc).__name__}{detail}".strip()) from exc
        self.metrics.upstream.labels(target="iterable", endpoint=label, status=str(status)).inc()
        self.throttle.answered(label, status)
        if retry_after and status in api.RETRYABLE_STATUSES:
            self.holds[label] = time.monotonic() + retry_after
        return status, raw, retry_after


def encoded(body: Any) -> bytes:
    """Compact JSON as Iterable receives it from us (``wire.compact``; ``wire.json_size`` counts at least
    as many bytes). Raises as ``wire.compact`` does."""
    return compact(body)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
