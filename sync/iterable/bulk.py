"""Pure rules for Iterable's bulk endpoints: rounds in per-person order, and reading bulk answers.

No I/O: the sink (``sync.iterable.sink``) sends what these functions decide.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.model import Row
from sync.outbound.mapper import BULK_FORM, IterableCall

MAX_BULK_ITEMS = 1000
MAX_BULK_BYTES = 4_000_000  # Iterable's "4MB" as bytes on the wire (RudderStack's reading)

# failedUpdates lists -> whether the item may succeed later ("not found" can be creation lag)
FAILURE_LISTS = {
    "invalidEmails": False, "invalidUserIds": False, "conflictEmails": False, "conflictUserIds": False,
    "forgottenEmails": False, "forgottenUserIds": False, "invalidDataEmails": False, "invalidDataUserIds": False,
    "notFoundEmails": True, "notFoundUserIds": True,
}
# users/bulkUpdateSubscriptions answers with top-level lists instead (BulkUpdateSubscriptionsResponse):
# identifiers refused, and valid ones that failed on "internal error" (worth another try)
TOP_LEVEL_LISTS = {"invalidEmails": False, "invalidUserIds": False, "validEmailFailures": True,
                   "validUserIdFailures": True}

Item = tuple[Row, IterableCall]

# the request groups of one wave, in the order they go out: each bulk endpoint, then the single calls
GROUPS = (*BULK_FORM, "single")


def group_of(call: IterableCall, singles: Collection[int] = (), row_id: int = 0) -> str:
    """The request group a call goes in: its bulk endpoint, or "single" for calls that have no bulk
    form or that were planned as single calls (``singles``)."""
    return call.endpoint if call.endpoint in BULK_FORM and row_id not in singles else "single"


@dataclass(slots=True, kw_only=True)
class Plan:
    """How one round sends each person's calls: Iterable processes bulk and single calls in two queues,
    so a person's writes must not be in both at once. ``singles``: bulk-able rows sent as single calls;
    ``held``: rows that must wait this many seconds for the bulk queue to settle; ``families``: the
    queue each person used."""

    send: list[Item] = field(default_factory=list)
    singles: set[int] = field(default_factory=set)
    held: dict[int, float] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)


def plan(items: Sequence[Item], recent: Mapping[str, tuple[str, float]], now: float, settle: float) -> Plan:
    """Choose the queue of every call, person by person, in received order.

    ``recent`` is person -> (queue, when) of their last call (monotonic seconds). A person keeps the
    queue they used in the last ``settle`` seconds; a person whose round holds a call that only has a
    single form (purchase, cart, email change) sends everything single; a single-only call for a
    person who used the bulk queue less than ``settle`` ago waits until it has settled.
    """
    result = Plan()
    people: dict[str, list[Item]] = {}
    for row, call in items:
        people.setdefault(row.user_key or f"row:{row.id}", []).append((row, call))
    for person, mine in people.items():
        family, since = recent.get(person, ("", -settle))
        family = family if now - since < settle else ""
        sent = False
        for index, (row, call) in enumerate(mine):
            if call.endpoint not in BULK_FORM:
                if family == "bulk":
                    result.held[row.id] = max(0.0, settle - (now - since))
                    break  # the person's later rows wait behind this one
                family = "single"
            elif family == "single" or (not family and any(c.endpoint not in BULK_FORM for _, c in mine[index:])):
                result.singles.add(row.id)
                family = "single"
            elif family != "bulk":
                family, since = "bulk", now
            result.send.append((row, call))
            sent = True
        if sent:
            result.families[person] = family
    return result


def waves(items: Sequence[Item], singles: Collection[int] = ()) -> list[list[Item]]:
    """Split a claimed batch so a person's rows on different endpoints go out in received order.

    The person is the row's ordering key (``Row.user_key``), which joins a person's userId, email
    and aliases.
    """
    last: dict[str, tuple[int, str]] = {}
    out: list[list[Item]] = []
    for row, call in items:
        key = row.user_key or f"row:{row.id}"
        group = group_of(call, singles, row.id)
        wave, previous = last.get(key, (0, group))
        wave += previous != group
        last[key] = (wave, group)
        while len(out) <= wave:
            out.append([])
        out[wave].append((row, call))
    return out


def bulk_body(field: str, items: Sequence[bytes]) -> bytes:
    """A bulk request's JSON body from its items' encoded bytes: ``{"<field>":[item,item,...]}``."""
    return b"".join((b'{"', field.encode(), b'":[', b",".join(items), b"]}"))


@dataclass(slots=True, kw_only=True)
class BulkOutcome:
    """A 200 bulk answer read item by item: ``failed`` index -> (reason, retryable); ``unmatched`` is
    how many failures Iterable counted that no item could be matched to."""

    failed: dict[int, tuple[str, bool]] = field(default_factory=dict)
    unmatched: int = 0


def bulk_failures(response: Any, bodies: Sequence[dict[str, Any]]) -> BulkOutcome:
    """Match the failures of a 200 bulk answer to the items sent.

    userIds match exactly (they are case-sensitive in Iterable); emails match without regard to case.
    """
    outcome = BulkOutcome()
    if not isinstance(response, dict):
        return outcome
    failed: dict[str, Any] = response["failedUpdates"] if isinstance(response.get("failedUpdates"), dict) else {}
    lists = [(f"failedUpdates.{k}", v, FAILURE_LISTS.get(k)) for k, v in failed.items()]
    lists += [(k, response.get(k), retryable) for k, retryable in TOP_LEVEL_LISTS.items()]
    for name, values, retryable in lists:
        if retryable is not None and isinstance(values, list) and values:
            _match(outcome.failed, bodies, name, values, retryable)
    disallowed = set(response.get("disallowedEventNames") or [])
    for index, body in enumerate(bodies):
        if index not in outcome.failed and body.get("eventName") in disallowed:
            outcome.failed[index] = (f"Iterable rejected the item: disallowedEventNames "
                                     f"(event {json.dumps(body.get('eventName'), ensure_ascii=False)[:200]})", False)
    count = response.get("failCount")
    if isinstance(count, int) and not isinstance(count, bool):
        outcome.unmatched = max(0, count - len(outcome.failed))
    return outcome


def _match(failures: dict[int, tuple[str, bool]], bodies: Sequence[dict[str, Any]], name: str,
           values: list[Any], retryable: bool) -> None:
    by_email = "Email" in name
    field_name = "email" if by_email else "userId"
    wanted = {_norm(v, by_email) for v in values}
    for index, body in enumerate(bodies):
        value = body.get(field_name)
        if index not in failures and value and _norm(value, by_email) in wanted:
            failures[index] = (f"Iterable rejected the item: {name}", retryable)


def _norm(value: Any, by_email: bool) -> str:
    return str(value).lower() if by_email else str(value)
