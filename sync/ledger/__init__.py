"""The ledger: idempotency record and durable outbox for both directions (SPEC section 4).

``model`` holds the values, ``schema`` the tables, ``store`` the SQLAlchemy implementation that
serves SQLite and PostgreSQL, ``migrate`` the Alembic wiring.
"""

from sync.ledger.model import Claim, Direction, NewEvent, Row, Settlement, Stats, Status
from sync.ledger.store import Ledger

__all__ = ["Claim", "Direction", "Ledger", "NewEvent", "Row", "Settlement", "Stats", "Status"]
