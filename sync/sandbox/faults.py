"""Fault injection shared by the fake servers: scripted statuses, latency, hangs, resets."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web


@dataclass(slots=True, kw_only=True)
class Fault:
    """Applies to the next ``times`` requests whose path ends with ``endpoint`` (``*``: any)."""

    endpoint: str = "*"
    status: int = 500
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0
    mode: Literal["status", "hang", "reset", "slow"] = "status"
    body: dict[str, object] = field(default_factory=lambda: {"msg": "injected fault", "code": "GenericError"})

    def matches(self, path: str) -> bool:
        return self.times > 0 and (self.endpoint == "*" or path.endswith(self.endpoint))


class Faults:
    def __init__(self) -> None:
        self.queue: list[Fault] = []
        self.latency = 0.0

    def add(self, *faults: Fault) -> None:
        self.queue.extend(faults)

    def clear(self) -> None:
        self.queue.clear()
        self.latency = 0.0

    async def apply(self, request: web.Request) -> web.StreamResponse | None:
        """Return the injected response for this request, or None to serve it normally."""
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = next((f for f in self.queue if f.matches(request.path)), None)
        if fault is None:
            return None
        fault.times -= 1
        if fault.delay or fault.mode == "slow":
            await asyncio.sleep(fault.delay)
            if fault.mode == "slow":
                return None
        if fault.mode == "hang":
            await asyncio.sleep(3600)
        if fault.mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("injected connection reset")
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return web.Response(status=fault.status, text=json.dumps(fault.body), headers=headers,
                            content_type="application/json")
