"""Identifiers as a destination may take them (SPEC section 13): trimmed, free of control characters, and
an email only when Iterable would take it as one. Pure.

Iterable refuses an address it cannot parse with ``InvalidEmailAddressError`` ("Invalid email: sayan", Iterable
API docs) and lists it in a bulk response's ``failedUpdates.invalidEmails``. Its rule (Iterable support, "Email
Validation in Iterable") is the Apache Commons EmailValidator: an address formatted as RFC 5321/5322 says, whose
domain ends in a real top-level domain, no deliverability check. Here: ``email-validator`` for the syntax (no
DNS) and the Public Suffix List's ICANN section (``publicsuffixlist``) for the top-level domain, where a
hand-written regex let through a trailing newline.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from publicsuffixlist import PublicSuffixList

MAX_EMAIL = 254
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    """Whether text holds a control character (C0, DEL, C1, or a Unicode line/paragraph separator)."""
    return _CONTROL.search(text) is not None


def is_email(value: Any) -> bool:
    """Whether ``value`` is an address Iterable takes, exactly as given (surrounding spaces: no)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_EMAIL and _valid(value)


@lru_cache(maxsize=8192)
def _valid(text: str) -> bool:
    if has_control(text) or text != text.strip():
        return False
    try:
        text.encode()
        _check(text)
    except (EmailNotValidError, UnicodeError):
        return False
    return True


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False, only_icann=True)


def _check(text: str) -> None:
    """Raises ``EmailNotValidError`` when Iterable would refuse ``text``."""
    domain = validate_email(text, check_deliverability=False).ascii_domain
    if _suffixes().publicsuffix(domain.lower()) is None:
        raise EmailNotValidError("the domain does not end in a known top-level domain")


def email_problem(value: Any) -> str | None:
    """Why a present value is not an email (None when it is one, after trimming)."""
    if not isinstance(value, str):
        return "not an email address (expected a string)"
    if has_control(value):  # before trimming: a trailing newline is refused, not trimmed away
        return "contains a control character"
    text = value.strip()
    if len(text) > MAX_EMAIL:
        return f"not an email address (longer than {MAX_EMAIL} characters)"
    try:
        _check(text)
    except EmailNotValidError as exc:
        return f"not an email address ({exc})"
    except UnicodeError:
        return "not an email address (cannot be encoded)"
    return None
