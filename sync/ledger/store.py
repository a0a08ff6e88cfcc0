"""The ledger on SQLAlchemy's async engine: SQLite (single process, WAL) or PostgreSQL (replicas).

One class over three concerns, each in its own module: ``ingest`` (recording, people, the anonymous hold,
forget), ``claims`` (leases, re-check, settlement) and ``operations`` (pauses, counts, reading, requeue,
purge, cursors, singleton jobs); ``base`` holds the engine and the transaction they share.
"""

from __future__ import annotations

from sync.ledger.base import (
    NOT_FORGOTTEN,
    PAUSE_KINDS,
    SQLITE_BUSY_TIMEOUT_MS,
    _lock_id,
    _row,
    async_url,
    create_engine,
)
from sync.ledger.claims import Claims
from sync.ledger.ingest import Ingest
from sync.ledger.operations import Operations

__all__ = ["NOT_FORGOTTEN", "PAUSE_KINDS", "SQLITE_BUSY_TIMEOUT_MS", "Ledger", "_lock_id", "_row", "async_url",
           "create_engine"]


class Ledger(Ingest, Claims, Operations):
    """Every operation is one transaction; database failures surface as ``LedgerUnavailable``."""
