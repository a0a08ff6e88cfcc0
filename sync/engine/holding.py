"""Holding and releasing anonymous events at intake (SPEC section 11), decided once per group commit.

The decision runs inside the group commit, after the previous commit finished and before this one starts, over
every request the commit carries, in received order. So an identify sees the holds of every earlier request,
whether they committed in an earlier group commit or ride in the same one (issue 20 item 5: an anonymous event
and the identify that names its visitor, sent 3 ms apart, left the anonymous event held). Release does not
depend on ``outbound.hold_anonymous_hours``: rows held while holding was on are released when their visitor is
identified after it was turned off (issue 20 item 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sync.model import Direction, NewEvent, Row, Status
from sync.outbound import anonymous
from sync.outbound import mapper as outbound

Visitors = dict[str, list[tuple[str, dict[str, Any]]]]  # visitor -> (key, payload) of held rows, received order


class HeldRows(Protocol):
    async def held(self, keys: Sequence[str]) -> list[Row]: ...

    async def held_counts(self, keys: Sequence[str]) -> tuple[dict[str, int], int]: ...


class Decide(Protocol):
    """A released event's rows: its own first, then the calls it brings along (tokens, subscriptions)."""

    def __call__(self, event: dict[str, Any]) -> list[NewEvent]: ...


@dataclass(slots=True, kw_only=True)
class Holds:
    """Holds anonymous-only rows (while ``hold_hours`` > 0) and releases held rows after the first row that
    identifies their visitor; ``decide`` maps a released event with its new identity, with the rows of the calls
    it brings along (never raises)."""

    ledger: HeldRows
    options: outbound.Options
    decide: Decide
    hold_hours: float

    async def prepare(self, requests: Sequence[Sequence[NewEvent]]) -> list[list[NewEvent]]:
        """Each request's rows as they are to be recorded: held, or followed by the rows they release.
        Raises ``LedgerError`` when the held rows cannot be read."""
        rows = [r for request in requests for r in request
                if r.direction is Direction.OUTBOUND and isinstance(r.payload, dict)]
        waiting = {id(r) for r in rows if self.hold_hours > 0 and _anonymous_only(r)}
        releasing = {id(r): v for r in rows if (v := self._identifies(r))}
        if not waiting and not releasing:
            return [list(request) for request in requests]
        keys = list({_hold_key(anonymous.anonymous_id(r.payload) or "") for r in rows if id(r) in waiting})
        counts, total = await self.ledger.held_counts(keys) if keys else ({}, 0)
        visitors: Visitors = {}
        for row in await self.ledger.held([_hold_key(v) for v in set(releasing.values())]):
            visitors.setdefault((row.user_key or "").removeprefix(anonymous.HOLD_PREFIX), []).append(
                (row.key, row.payload))
        state = _State(counts=counts, total=total, visitors=visitors)
        return [[out for row in request for out in self._decided(row, waiting, releasing, state)]
                for request in requests]

    def _identifies(self, row: NewEvent) -> str | None:
        """The visitor a row names together with a userId or email (who it can release), if any."""
        if row.status not in (Status.PENDING, Status.SKIPPED) or not isinstance(row.payload, dict):
            return None
        visitor = anonymous.anonymous_id(row.payload)
        if visitor is None and row.payload.get("type") == "alias":
            # alias(previousId=the visitor's anonymousId, userId): Segment's server-side way to tie a visitor to
            # a user ("previousId ... might be an Anonymous ID"); its libraries send no anonymousId with it
            visitor = anonymous.visitor_id(row.payload.get("previousId"))
        if visitor and outbound.raw_ids(row.payload, self.options.mapping.identity):
            return visitor
        return None

    def _decided(self, row: NewEvent, waiting: set[int], releasing: dict[int, str], state: _State) -> list[NewEvent]:
        if id(row) in waiting:
            row = self._held(row, state)
        out = [row]
        visitor = releasing.get(id(row))
        if visitor and state.visitors.get(visitor):
            out += self._released(row, state.visitors.pop(visitor))
        return out

    def _held(self, row: NewEvent, state: _State) -> NewEvent:
        visitor = anonymous.anonymous_id(row.payload) or ""
        key = _hold_key(visitor)
        row = anonymous.hold(row, row.payload, hours=self.hold_hours, counts={visitor: state.counts.get(key, 0)},
                             total=state.total)
        if row.status is Status.HELD:
            state.counts[key], state.total = state.counts.get(key, 0) + 1, state.total + 1
            state.visitors.setdefault(visitor, []).append((row.key, row.payload))  # an identify may follow
        return row

    def _released(self, identifying: NewEvent, held: list[tuple[str, dict[str, Any]]]) -> list[NewEvent]:
        ids = outbound.raw_ids(identifying.payload, self.options.mapping.identity)
        out: list[NewEvent] = []
        for key, payload in held:  # with the calls it brings along (a held event's push token, say)
            first, *more = self.decide(anonymous.identity_of(payload, ids.get("userId"), ids.get("email")))
            out += [replace(first, key=anonymous.released_key(key), replaces=(key,)), *more]
        return out


@dataclass(slots=True, kw_only=True)
class _State:
    counts: dict[str, int]
    total: int
    visitors: Visitors


def _anonymous_only(row: NewEvent) -> bool:
    return row.status is Status.SKIPPED and row.label == "no identifier" and bool(anonymous.anonymous_id(row.payload))


def _hold_key(visitor: str) -> str:
    return f"{anonymous.HOLD_PREFIX}{visitor}"
