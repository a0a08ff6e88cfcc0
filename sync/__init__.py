"""iterable-segment-sync: a self-hosted, lossless two-way sync between Segment and Iterable.

Layout: ``config`` (typed settings), ``ledger`` (the durable outbox, SQLite or PostgreSQL),
``outbound`` / ``inbound`` (pure mappers for each direction), ``delivery`` (the one engine that
drains the ledger), ``iterable`` / ``segment`` (the two sinks), ``ingress`` (HTTP endpoints),
``daemon`` (the wiring) and ``cli`` (the commands).
"""

__version__ = "0.1.0"
