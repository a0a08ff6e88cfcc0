"""Alembic wiring: migrations ship inside the package (``sync.migrations``) or sit in the checkout."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.config import Config
from sync.errors import LedgerNotMigrated, LedgerUnavailable

MIGRATION_LOCK = 0x5EC5_1715  # advisory lock id: replicas starting together migrate one at a time


def script_location() -> str:
    """Where the Alembic scripts are: the installed ``sync.migrations`` package or ``./migrations``."""
    spec = importlib.util.find_spec("sync.migrations")
    if spec is not None and spec.submodule_search_locations:
        return str(next(iter(spec.submodule_search_locations)))
    return str(Path(__file__).resolve().parents[2] / "migrations")


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", script_location())
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision the code knows (read from the scripts once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection, settings: Config | None) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    config = alembic_config()
    config.attributes["connection"] = connection
    if settings is not None:  # a data migration decides rows with its mapping (revision 0009)
        config.attributes["settings"] = settings
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, settings: Config | None = None) -> None:
    """Bring the ledger schema to head (idempotent, safe with several replicas). ``settings``: the daemon's
    config, whose mapping decides rows a data migration decides (without it, the default mapping)."""
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # building an index on a large ledger may take minutes
                await conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            await conn.run_sync(_upgrade, settings)
    except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError) as exc:
        raise LedgerUnavailable(f"cannot migrate the ledger: {str(getattr(exc, 'orig', exc))[:300]}") from exc


async def ensure_current(engine: AsyncEngine) -> None:
    """Raise unless the database answers and its schema is at head."""
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current)
    except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError) as exc:
        raise LedgerUnavailable(f"ledger unreachable: {str(getattr(exc, 'orig', exc))[:300]}") from exc
    if current != head_revision():
        raise LedgerNotMigrated(f"ledger schema is at {current or 'no revision (an empty database)'}, code needs "
                                f"{head_revision()}: "
                                "run `python -m sync migrate --config FILE` (serve does it at start)")
