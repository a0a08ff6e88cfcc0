"""Request pacing shared through PostgreSQL: Iterable's limits are per project, not per process.

Each endpoint has one row holding its next free slot, by the database's clock. Taking a slot is one
statement that moves it on by the endpoint's spacing, so N replicas together send at most the configured
rate, evenly spaced, without an operator dividing limits by hand.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.errors import LedgerUnavailable

_TAKE = sa.text("""
    INSERT INTO pacing (name, next_at) VALUES (:name, extract(epoch FROM clock_timestamp()) + :spacing)
    ON CONFLICT (name) DO UPDATE
        SET next_at = greatest(pacing.next_at, extract(epoch FROM clock_timestamp())) + :spacing
    RETURNING next_at - :spacing - extract(epoch FROM clock_timestamp()) AS wait
""")


class SharedPacing:
    """``take(name, spacing)``: reserve the next slot of ``name``; returns the seconds to wait for it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def take(self, name: str, spacing: float) -> float:
        try:
            async with self.engine.begin() as conn:
                wait = await conn.scalar(_TAKE, {"name": name, "spacing": spacing})
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, TimeoutError, OSError) as exc:
            raise LedgerUnavailable(f"ledger unavailable for pacing: {str(exc).splitlines()[0][:200]}") from exc
        return max(0.0, float(wait or 0.0))
