"""How long the ledger may wait on the database (SPEC section 4, "Time and stalls").

A replica that stalls (stopped, paused, partitioned) inside a transaction must not block the others for longer
than these: PostgreSQL ends a wait for a lock after ``lock_seconds`` and a statement after ``statement_seconds``,
and closes a session left idle inside a transaction after ``idle_in_transaction_seconds`` (its locks go with
it). ``pool_seconds`` bounds the wait for a free connection. Each of these surfaces as ``LedgerUnavailable``:
ingest answers 503 with ``Retry-After``, the worker waits and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.config import LedgerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseTimeouts:
    lock_seconds: float = 5.0
    statement_seconds: float = 30.0
    idle_in_transaction_seconds: float = 30.0
    pool_seconds: float = 5.0

    @classmethod
    def of(cls, settings: LedgerConfig) -> DatabaseTimeouts:
        """The ``[ledger]`` section's ``*_timeout_seconds`` keys."""
        return cls(lock_seconds=settings.lock_timeout_seconds, statement_seconds=settings.statement_timeout_seconds,
                   idle_in_transaction_seconds=settings.idle_in_transaction_timeout_seconds,
                   pool_seconds=settings.pool_timeout_seconds)

    def server_settings(self) -> dict[str, str]:
        """PostgreSQL session settings (milliseconds), as asyncpg's ``server_settings`` takes them."""
        return {"lock_timeout": _ms(self.lock_seconds), "statement_timeout": _ms(self.statement_seconds),
                "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction_seconds)}

    def connect_args(self) -> dict[str, Any]:
        return {"server_settings": self.server_settings()}


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))
