"""The log's privacy under ``--log-level DEBUG`` (SPEC section 11: no email or userId in a log line)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sync import logs

LIBRARIES = ["sqlalchemy.engine.Engine", "aiosqlite", "asyncpg", "backoff", "urllib3"]


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES + ["sqlalchemy"]}
    yield
    root.handlers[:], root.level = handlers, level
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.parametrize("library", LIBRARIES)
def test_at_debug_the_database_drivers_do_not_log_statement_parameters(
        library: str, restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug hunt: at DEBUG, aiosqlite's and SQLAlchemy's lines carried the rows' parameters (a userId key,
    the traits as JSON) into the log."""
    logs.setup(level="DEBUG")
    logging.getLogger(library).debug("executing %r", ("u:alice-secret-uid", '{"name": "Alice"}'))
    logging.getLogger(library).info("executing %r", ("u:alice-secret-uid",))
    logging.getLogger("sync.app").debug("our own debug line")
    logged = capsys.readouterr().err
    assert "alice-secret-uid" not in logged
    assert "our own debug line" in logged  # DEBUG still shows the daemon's own lines
