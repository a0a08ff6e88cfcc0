"""Alembic environment: always run on a connection handed in by ``sync.ledger.migrate``."""

from alembic import context

from sync.ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m sync migrate --config FILE`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
