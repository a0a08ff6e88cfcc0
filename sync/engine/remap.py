"""``ledger retry --remap``: decide chosen rows again under the config in force (SPEC section 10, B5).

A row's call is frozen at intake; re-mapping is explicit and refuses where it could duplicate: a row
whose last try's outcome is unknown (it failed with a timeout or a 5xx, so Iterable may have applied
it) is not re-routed to another endpoint unless forced. Pure.
"""

from __future__ import annotations

from typing import Any

from sync.model import Direction, NewEvent, Remapped, Row, Status

COMPANIONS = ("device token", "browser token", "subscriptions", "email change")  # calls an event brings along


NOT_AS_RECEIVED = "_notAsReceived"  # a rejected row's payload kept as evidence, altered to be stored (and why)


def remap(row: Row, decided: NewEvent, *, force: bool = False) -> Remapped | str:
    """The row as the current mapping decides it, or why re-mapping it is refused."""
    if isinstance(row.payload, dict) and NOT_AS_RECEIVED in row.payload:
        return (f"row {row.id}: its event was kept as evidence, not as received "
                f"({str(row.payload[NOT_AS_RECEIVED])[:80]}): it cannot be decided again; send it again fixed")
    if row.status is Status.PENDING and row.lease_owner is not None:
        return f"row {row.id}: being sent right now (claimed by a worker); try again once that try has settled"
    if row.status is Status.PENDING and row.attempts > 0:
        return f"row {row.id}: pending after {row.attempts} attempts (the last one's outcome is unknown)"
    if row.status is Status.DELIVERED:
        return f"row {row.id}: already delivered"
    if row.kind in COMPANIONS:
        return f"row {row.id}: its {row.kind} call comes with its event; re-map the event's own row"
    if not force and row.direction is Direction.OUTBOUND and _outcome_unknown(row):
        before, after = _endpoint(row.mapped), _endpoint(decided.mapped)
        if before != after:
            return (f"row {row.id}: its last try failed without an answer ({(row.reason or '')[:80]}), so Iterable "
                    f"may have applied it; re-mapping would send it to {after or 'nowhere'} instead of "
                    f"{before or 'an unknown endpoint'} (use --force to do it anyway)")
    return Remapped(id=row.id, was=row.status, status=decided.status, mapped=decided.mapped,
                    mapping_digest=decided.mapping_digest, reason=decided.reason)


def _outcome_unknown(row: Row) -> bool:
    """A retryable failure (timeout, reset, 5xx, 429) that was given up on: it may have been applied."""
    return row.status is Status.DEAD and (row.reason or "").startswith("gave up after")


def _endpoint(mapped: dict[str, Any] | None) -> str | None:
    return str(mapped["endpoint"]) if mapped and "endpoint" in mapped else None
