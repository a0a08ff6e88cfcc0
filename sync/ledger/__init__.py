"""The ledger: idempotency record and durable outbox for both directions (SPEC section 4).

``store`` is the SQLAlchemy ledger that serves SQLite and PostgreSQL, ``memory`` the same contract in
memory, ``decisions`` the rules both apply (pure), ``schema`` the tables, ``migrate`` the Alembic wiring,
``pacing`` the shared rate-limit windows, ``browse`` the console's queries. The values a ledger takes and returns live in :mod:`sync.model`, so that
the engine and the mappers import no SQLAlchemy; this package hands nothing on.
"""
