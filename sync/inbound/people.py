"""One person across both directions (SPEC section 14): an inbound track obeys the person's last end-user
consent seen outbound, and carries the userId the ledger links to its email, so Segment does not split the
person's profile in two (Segment's own Iterable source sends the email as ``anonymousId``). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sync.model import Direction, Known, NewEvent, Status
from sync.outbound import consent


def asked(rows: Sequence[NewEvent]) -> list[str]:
    """The identifiers to look up for ``rows``: those of inbound rows still to be sent."""
    return [ident for row in rows if _open(row) for ident in row.identities]


def decided(row: NewEvent, found: Mapping[str, Known], *, categories: Sequence[str], join: bool) -> NewEvent:
    """``row`` skipped when the person's last consent denies one of ``categories``; else, with ``join``, its
    track given the linked userId when it has none (the email stays in ``context.traits`` and
    ``anonymousId``, as before)."""
    if not _open(row):
        return row
    person = next((found[i] for i in row.identities if i in found and found[i] != Known()), Known())
    category = consent.denied(person.consent, categories)
    if category:
        return replace(row, status=Status.SKIPPED, reason=consent.reason(category),
                       label="consent.inbound_categories", mapped=None)
    if join and person.user_id and row.mapped is not None and not row.mapped.get("user_id"):
        return replace(row, mapped={**row.mapped, "user_id": person.user_id})
    return row


def _open(row: NewEvent) -> bool:
    return row.direction is Direction.INBOUND and row.status is Status.PENDING and row.mapped is not None
