"""What the fake Iterable refuses, written from Iterable's public API docs, never from the product's code
(a stand-in that shared the product's validators would agree with its mistakes).

- Emails: Iterable answers ``InvalidEmailAddressError`` ("Invalid email: sayan") for an address it cannot
  parse, and lists it in a bulk response's ``failedUpdates.invalidEmails``; it validates with the Apache Commons
  EmailValidator (Iterable support, "Email Validation in Iterable"): written here as its shape, one ``@``, an
  unquoted local part of at most 64 characters, a domain of dot-separated labels ending in a top-level domain
  that exists (the ICANN section of the Public Suffix List), at most 254 characters in all, no spaces or
  control characters.
- Commerce items (``CommerceItem``): ``id`` and ``name`` strings, ``price`` a number (double), ``quantity`` an
  integer (int64); ``total`` a number; ``createdAt`` an integer (unix time).
"""

from __future__ import annotations

import string
from functools import cache
from typing import Any

from publicsuffixlist import PublicSuffixList

_LOCAL_SPECIALS = set("!#$%&'*+-/=?^_`{|}~.")
_LABEL_CHARS = set(string.ascii_letters + string.digits + "-")


def valid_email(value: Any) -> bool:
    """Iterable's address rule as described above."""
    if not isinstance(value, str) or not 3 <= len(value) <= 254 or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return _local_ok(local) and _domain_ok(domain)


def _local_ok(local: str) -> bool:
    if not 0 < len(local) <= 64 or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(c.isalnum() or c in _LOCAL_SPECIALS for c in local)


def _domain_ok(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2 or len(labels[-1]) < 2 or not _top_level_domain_exists(domain):
        return False
    for label in labels:
        if not 0 < len(label) <= 63 or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c in _LABEL_CHARS or (ord(c) > 127 and c.isalnum()) for c in label):
            return False
    return True


@cache
def _tlds() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False, only_icann=True)


def _top_level_domain_exists(domain: str) -> bool:
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _tlds().publicsuffix(ascii_domain.lower()) is not None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def item_problem(item: Any) -> str | None:
    """Why Iterable would refuse one commerce item (None: it takes it)."""
    if not isinstance(item, dict):
        return "items: each must be an object"
    for name in ("id", "name"):
        if not isinstance(item.get(name), str) or not item[name]:
            return f"items: {name} is required (a string)"
    if not is_number(item.get("price")):
        return "items: price is required (Number value expected)"
    if not is_integer(item.get("quantity")):
        return "items: quantity is required (Integer value expected)"
    return None
