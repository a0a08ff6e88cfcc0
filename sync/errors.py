"""One exception tree for the daemon.

    SyncError
    ├── ConfigError            a config file or value is wrong (names each bad key)
    ├── LedgerError
    │   ├── LedgerUnavailable  the database cannot be reached or cannot commit
    │   ├── LedgerNotMigrated  the schema is missing or behind the code
    │   └── LedgerLocked       another process owns the SQLite ledger
    ├── Overloaded             too many events are waiting for the ledger: HTTP 503, retry shortly
    ├── InvalidEvent           an incoming event is malformed (message names the field): HTTP 400
    ├── Unauthenticated        an incoming request's credentials are missing or wrong: HTTP 401
    └── UpstreamError          a call to Iterable or Segment failed
        ├── RetryableUpstream  429 / 5xx / timeout / connection error (retry_after may be set)
        ├── AuthRejected       401 / 403: the direction pauses
        └── RequestRejected    400-class for the whole request

Third-party exceptions are converted at the adapter boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error the daemon raises on purpose."""


class ConfigError(SyncError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class LedgerError(SyncError):
    pass


class LedgerUnavailable(LedgerError):
    """The ledger did not commit. ``outage``: the database could not be reached or did not answer in time (a
    lock, statement or pool timeout, a lost connection, a full disk), as against a statement it refused for the
    values in it (SQLSTATE classes 22 and 23): trying again at once, row by row, would only wait again."""

    def __init__(self, message: str, *, outage: bool = True) -> None:
        super().__init__(message)
        self.outage = outage


class LedgerNotMigrated(LedgerError):
    pass


class LedgerLocked(LedgerError):
    pass


class Overloaded(SyncError):
    """Ingest is refused before queueing, so memory stays bounded under overload."""


class InvalidEvent(SyncError):
    """An event that can never be delivered; the message names the field at fault."""


class Unauthenticated(SyncError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} missing or not accepted")


class UpstreamError(SyncError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RetryableUpstream(UpstreamError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class AuthRejected(UpstreamError):
    pass


class RequestRejected(UpstreamError):
    pass


class CannotListen(SyncError):
    """``serve`` cannot open its port (taken by another process, or an address this machine does not have)."""
