"""People: the identifiers that name one person share one ordering key (SPEC section 4).

An identifier is ``u:<userId>`` (case-sensitive, as Iterable treats userIds) or ``e:<email>``
(lower-cased, as Iterable matches emails). Both are normalised first, so that the forms one person's
identifier takes in a keyboard, a CRM export and a mobile app name one person: surrounding whitespace
trimmed, Unicode NFC for userIds (canonically equivalent text is the same text) and NFKC for emails
(compatibility forms such as full-width letters, as UTS #46 maps domain names). A person's key is one of their identifiers; events that
carry several identifiers (an identify with userId and email, an alias) join them into one person,
and two people joined later merge under the smaller key. Pure functions; the ledger stores the links.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from sync.segment.spec import is_email, text_id

MAX_IDENTIFIER = 255


def identifier(value: object) -> str | None:
    """The identifier for a userId or email value (an email-shaped userId counts as the email)."""
    text = text_id(value)
    if text is None:
        return None
    email = email_identifier(text)
    return email or _bounded(f"u:{unicodedata.normalize('NFC', text)}")


def email_identifier(value: object) -> str | None:
    """``e:<email>`` in its one normal form (trimmed, NFKC, lower-cased), or None when not an email."""
    if not isinstance(value, str):
        return None
    email = normal_email(value)
    return _bounded(f"e:{email}") if is_email(email) else None


def normal_email(value: str) -> str:
    """An email address in the form every spelling of it shares: ``" Zoë@Example.COM"`` (composed or not)
    -> ``"zoë@example.com"``. Lower-casing can decompose (``"İ"``), so it is normalised again after."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value.strip()).lower())


def forms(value: str) -> tuple[str, ...]:
    """The spellings of one identifier value that stored text may hold (as given, and its normal forms),
    longest first: what a scrub of free text has to look for."""
    found = {value, value.strip()}
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        found.add(unicodedata.normalize(form, value.strip()))
    return tuple(sorted((f for f in found if f), key=len, reverse=True))


def _bounded(text: str) -> str:
    if len(text) <= MAX_IDENTIFIER:
        return text
    return f"{text[:2]}sha1:{hashlib.sha1(text.encode(errors='surrogatepass')).hexdigest()}"


def of(*values: str | None) -> tuple[str, ...]:
    """Distinct identifiers in the order given (the first one becomes a new person's key)."""
    return tuple(dict.fromkeys(v for v in values if v))


class _Components:
    """Union-find whose representative is the smallest existing person key, else the first identifier."""

    def __init__(self, existing: Iterable[str]) -> None:
        self.parent: dict[str, str] = {}
        self.existing = set(existing)

    def find(self, node: str) -> str:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        keep, drop = (ra, rb) if self._before(ra, rb) else (rb, ra)
        self.parent[drop] = keep

    def _before(self, a: str, b: str) -> bool:
        a_old, b_old = a in self.existing, b in self.existing
        if a_old != b_old:
            return a_old
        return a < b if a_old else True  # new-only: the first identifier seen wins


def link(known: Mapping[str, str], groups: Sequence[Sequence[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Join each group of identifiers into one person, given the links already stored.

    Returns ``(links, merges)``: identifier -> person for every identifier whose link is new or
    changed, and old person -> new person for stored people that were merged into another.
    """
    components = _Components(known.values())
    for ident, person in known.items():
        components.union(person, ident)
    for group in groups:
        for ident in group:
            components.find(ident)
        for other in group[1:]:
            components.union(group[0], other)
    links = {}
    for group in groups:
        for ident in group:
            person = components.find(ident)
            if known.get(ident) != person:
                links[ident] = person
    merges = {p: components.find(p) for p in set(known.values()) if components.find(p) != p}
    return links, merges

