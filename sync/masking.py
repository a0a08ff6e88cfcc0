"""Personal data out of free text (SPEC section 11): no email or userId in a log line or a stored upstream
message. Iterable's answers quote the user ("Invalid email: <address>"), so every upstream message is masked
before it is stored as a row's error or reason, and every log line is masked as it is written. Pure.

An email is recognised by its shape anywhere; a userId cannot be, so the values of the request that
named the person are masked by value (each spelling of them, without regard to case).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sync import people

EMAIL_MASK = "[email]"
USER_ID_MASK = "[userId]"
PHONE_MASK = "[phone]"
# an address as it appears inside a sentence: local part, "@", dotted domain labels (quotes and brackets stop it);
# bounded repeats (RFC 5321's sizes) keep the scan linear on long text without spaces
_CHAR = r"[^\s@\"'<>()\[\],;:]"
_LABEL = r"[^\s@\"'<>()\[\],;:.]{1,63}"
EMAIL_SHAPE = re.compile(rf"{_CHAR}{{1,64}}@(?:{_LABEL}\.){{1,8}}{_LABEL}")
_NAMING = ("email", "userId", "currentEmail", "newEmail")
# a phone number in international form as a sentence quotes it (E.164: "+", 8 to 15 digits, written with
# spaces, dots, dashes or brackets between them): Iterable's answers quote a user's phoneNumber
PHONE_SHAPE = re.compile(r"(?<![\w+])\+\d(?:[ .\-()]{0,2}\d){7,14}(?!\w)")


def mask(text: str, user_ids: Iterable[str] = ()) -> str:
    """``text`` with every email-shaped token replaced by ``[email]``, every international phone number by
    ``[phone]`` and each spelling of ``user_ids`` by ``[userId]``: ``"Invalid email: Zoë@Example.com"`` ->
    ``"Invalid email: [email]"``, ``"phone +1 555-000-1111"`` -> ``"phone [phone]"``."""
    text = PHONE_SHAPE.sub(PHONE_MASK, EMAIL_SHAPE.sub(EMAIL_MASK, text))
    for value in user_ids:
        for form in people.forms(value):
            if len(form) >= 2:  # a one-character userId would mask half of any sentence
                text = re.sub(_whole(form), USER_ID_MASK, text, flags=re.IGNORECASE)
    return text


def _whole(value: str) -> str:
    """``value`` as a pattern that does not match inside a longer word ("Bad" is not masked in "BadParams")."""
    before = r"(?<![^\W_])" if value[0].isalnum() else ""
    after = r"(?![^\W_])" if value[-1].isalnum() else ""
    return f"{before}{re.escape(value)}{after}"


def named_in(body: Mapping[str, Any]) -> list[str]:
    """The identifier values an Iterable request body names (top level and its ``user``), longest first."""
    found: set[str] = set()
    user = body.get("user")
    for part in (body, user if isinstance(user, Mapping) else {}):
        for key in _NAMING:
            value = part.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                found.add(str(value))
    return sorted(found, key=len, reverse=True)
