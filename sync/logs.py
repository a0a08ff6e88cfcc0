"""Structured logging: text or JSON lines, with every configured secret redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sync import masking

# libraries whose DEBUG and INFO lines carry statement parameters or request data (an event's userId and traits):
# they stay at WARNING whatever ``--log-level`` says (SPEC section 11: no identifier in a log line)
QUIET_BELOW_WARNING = ("sqlalchemy", "aiosqlite", "asyncpg", "backoff", "urllib3", "requests")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class Redactor(logging.Filter):
    """Replaces secrets in the rendered message and extra fields with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.redact(record.getMessage()), ()
            for key, value in list(vars(record).items()):
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, self.redact(value))
        return True


class PersonalData(logging.Filter):
    """Masks emails in the rendered message and extra fields (SPEC section 11: no email in a log line); a
    userId cannot be recognised by its shape, so the messages that could hold one are masked where made."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = masking.mask(record.getMessage()), ()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, masking.mask(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        text = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{text} {extras}" if extras else text
        return f"{text}\n{self.formatException(record.exc_info)}" if record.exc_info else text


def setup(*, fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redactor(secrets))
    handler.addFilter(PersonalData())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "segment", "apscheduler", "alembic", *QUIET_BELOW_WARNING):
        logging.getLogger(noisy).setLevel(logging.WARNING)
