"""Slow and numerous clients (issue 20 item 4): a bound on open connections and on the time a client may take
to send a request's headers, so trickling clients cannot hold every file descriptor.

- Headers: aiohttp closes a connection that has not sent a complete request within its keep-alive timeout
  (counted from the connection's start, not reset by partial data), and an idle keep-alive connection after
  the same time; ``serve`` sets it to ``server.header_timeout_seconds``. Bodies have their own timeout
  (``sync.http.ingress.BODY_READ_SECONDS``).
- Connections: past ``server.max_connections`` open connections a new one is answered ``503`` with
  ``Retry-After`` and closed at once (it never holds a descriptor), with a log line at most every 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

from aiohttp import web

log = logging.getLogger("sync.http.connections")

RESERVED_DESCRIPTORS = 128  # for the ledger's connections, upstream HTTP clients, logs and the listening socket
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
           b"Connection: close\r\nContent-Length: 63\r\n\r\n"
           b'{"success": false, "error": "too many connections; retry soon"}')
LOG_EVERY_SECONDS = 10.0


def connection_limit(configured: int) -> int:
    """``configured``, or (0) what the open-file limit allows: the soft limit is first raised to the hard one
    (systemd's default soft limit is 1,024), less ``RESERVED_DESCRIPTORS``."""
    if configured > 0:
        return configured
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(16, min(soft, 65_536) - RESERVED_DESCRIPTORS)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSAL)
        transport.close()


class _Counted(asyncio.Protocol):
    """Forwards to aiohttp's handler, and tells its site when the connection ends."""

    def __init__(self, handler: asyncio.Protocol, site: LimitedSite) -> None:
        self.handler, self.site = handler, site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.open -= 1
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class LimitedSite(web.TCPSite):
    """A TCP site that refuses connections past ``limit`` (see the module's docstring)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: int) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.limit = limit
        self.open = 0  # counted from the moment a connection is accepted (aiohttp counts it a little later)
        self.refused = 0
        self._logged_at = 0.0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (addresses, cleanup)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port,
                                                reuse_address=self._reuse_address, backlog=self._backlog)

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if self.open < self.limit:
            self.open += 1
            return _Counted(server(), self)
        self.refused += 1
        if time.monotonic() - self._logged_at > LOG_EVERY_SECONDS:
            self._logged_at = time.monotonic()
            log.warning("connection limit reached: new connections get 503 until some close (clients that are "
                        "slow to send their headers are dropped after server.header_timeout_seconds)",
                        extra={"open": self.open, "limit": self.limit, "refused": self.refused})
        return _Refused()
