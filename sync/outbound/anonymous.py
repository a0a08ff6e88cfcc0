"""Anonymous visitors (SPEC section 11): events with only an ``anonymousId`` are held, not skipped, and
released with the identity of the first event that names that visitor together with a userId or email,
in received order, after that identifying call, with their original timestamps. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.model import NewEvent, Status
from sync.segment.spec import as_dict, text_id

HOLD_PREFIX = "anon:"
MAX_PER_VISITOR = 200  # held events per anonymousId; past it, more are skipped ("over the hold limit")
MAX_TOTAL = 100_000  # held events in all; a flood of anonymous traffic cannot fill the ledger
EXPIRE_HOURS_WHEN_OFF = 24.0  # rows held before ``hold_anonymous_hours`` was set to 0 expire after this
# where a released event carries the identity that released it, whatever ``[outbound.identity]`` reads:
# ``sync.outbound.mapper.raw_ids`` falls back to it for each identifier its paths do not find
RELEASED_IDENTITY = "_releasedIdentity"


def anonymous_id(event: Mapping[str, Any]) -> str | None:
    return visitor_id(event.get("anonymousId"))


def visitor_id(value: Any) -> str | None:
    """A visitor's id as holds key it (an ``anonymousId``, or an alias's ``previousId`` naming one)."""
    found = text_id(value)
    return found[:200] if found else None


def hold(row: NewEvent, event: Mapping[str, Any], *, hours: float, counts: Mapping[str, int], total: int) -> NewEvent:
    """A row skipped for lack of an identifier becomes ``held`` when the visitor can be recognised later."""
    visitor = anonymous_id(event)
    if hours <= 0 or visitor is None or row.status is not Status.SKIPPED or row.label != "no identifier":
        return row
    if counts.get(visitor, 0) >= MAX_PER_VISITOR or total >= MAX_TOTAL:
        which = f"{MAX_PER_VISITOR} for this visitor" if counts.get(visitor, 0) >= MAX_PER_VISITOR else \
            f"{MAX_TOTAL} in all"
        return _copy(row, reason=f"anonymous, over the hold limit ({which})", label="hold limit")
    return _copy(row, status=Status.HELD, reason=f"anonymous: held until anonymousId {visitor} is identified",
                 label=None, user_key=f"{HOLD_PREFIX}{visitor}")


def identity_of(payload: Mapping[str, Any], userid: str | None, email: str | None) -> dict[str, Any]:
    """A held event's payload with the identity that released it (an event's own identifiers win): in
    Segment's places (``userId``, the email trait) and, for custom ``[outbound.identity]`` paths, under
    ``RELEASED_IDENTITY`` (``{"userId": ..., "email": ...}``, each only when known)."""
    event = dict(payload)
    event[RELEASED_IDENTITY] = {k: v for k, v in (("userId", userid), ("email", email)) if v}
    if userid and not text_id(event.get("userId")):
        event["userId"] = userid
    if email:
        if event.get("type") == "identify":
            event["traits"] = {"email": email, **as_dict(event.get("traits"))}
        else:
            context = as_dict(event.get("context"))
            event["context"] = {**context, "traits": {"email": email, **as_dict(context.get("traits"))}}
    return event


def released_key(key: str) -> str:
    return f"{key}:released"[:255]


def _copy(row: NewEvent, **changes: Any) -> NewEvent:
    from dataclasses import replace

    return replace(row, **{"status": row.status, **changes})
