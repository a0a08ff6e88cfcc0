"""The ledger contract's fixtures: every ledger the contract holds for (in memory, SQLite, PostgreSQL). A test
module that imports ``ledger_url`` and ``ledger`` from here runs each of its ledger tests on all three."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sync.ledger.memory import MemoryLedger
from sync.ledger.store import Ledger, create_engine
from tests.conftest import _blocking, _reset_pg, opened

MEMORY = "memory:"
AnyLedger = Ledger | MemoryLedger


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """The conftest's ledgers, and the in-memory one."""
    if request.param == "memory":
        return MEMORY
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("pg_url")
    _blocking(_reset_pg(url))
    return url


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[AnyLedger]:
    if ledger_url == MEMORY:
        yield MemoryLedger()
        return
    async with opened(ledger_url) as opened_ledger:
        yield opened_ledger


def another_process(ledger: AnyLedger, url: str) -> AnyLedger:
    """A second process on the same ledger (to claim and die); in memory, the memory is the process."""
    return ledger if isinstance(ledger, MemoryLedger) else Ledger(create_engine(url))
