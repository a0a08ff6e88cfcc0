"""The ledger's decisions as pure functions over plain values (SPEC sections 4, 11 and 12): which rows a
settlement, a release or a reaper may change and what they become, what a requeue accepts, what recording a
row that ``replaces`` held rows does to them, which rows a merge of two people moves, and what a forget turns
into tombstones.

The SQL ledger (``sync.ledger.store.Ledger``) expresses each decision as a statement built from these
constants and values; the in-memory ledger (``sync.ledger.memory.MemoryLedger``) applies them row by row. No
I/O library is imported here: the contract suite runs the same rules on SQLite, PostgreSQL and in memory.

Forgetting a person reaches every place that holds them:
- their rows in both directions (under their person key or any identifier): payloads become tombstones,
  reasons lose the identifiers, waiting rows are skipped;
- the held anonymous originals their released rows came from (``released as ...``), and rows still held
  under an ``anonymousId`` they used: tombstones too;
- identity links and their last consent: deleted (and pruned with the rows they served).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync import people
from sync.model import TERMINAL, Direction, NewEvent, Remapped, Settlement, Status

FORGOTTEN_PREFIX = "forgotten:"
HOLD_PREFIX = "anon:"  # sync.outbound.anonymous.HOLD_PREFIX (the ledger does not import the mapper)
RELEASED_SUFFIX = ":released"
WAITING = (Status.PENDING, Status.HELD)  # rows not yet decided for good: a forget skips them
TEXT_CHARS = 2000  # a stored error or reason is cut to this many characters
PAUSE_KINDS = ("paused", "manual")  # downtime kinds that stop a direction (the other, "ledger", is an outage)

# -- leases and settlement ------------------------------------------------------------------------------------

LEASED = Status.PENDING  # the only status a lease means anything on: settle, renew, release and reap change no other
MERGED = Status.PENDING  # the rows a merge of two people moves to the surviving key (sent rows keep theirs)
HOLD = Status.HELD  # the rows a recorded row's ``replaces`` releases
REQUEUED = Status.DEAD  # sent again as recorded; rejected and skipped rows are only decided again (``remap``)
PURGED = TERMINAL  # the statuses a purge deletes, once old enough

FREED: Mapping[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def held_by(status: Status, lease_owner: str | None, owner: str) -> bool:
    """May ``owner`` settle, renew or release this row? Only while it is pending and still leased to them: a
    row skipped, forgotten or reaped since it was claimed is no longer theirs."""
    return status is LEASED and lease_owner == owner


def lease_running(lease_expires_at: datetime | None, now: datetime) -> bool:
    """Does a lease still hold the row at ``now`` (by the clock that judges leases: ``sync.ledger.leases``)?"""
    return lease_expires_at is not None and lease_expires_at > now


def due(status: Status, next_attempt_at: datetime, lease_expires_at: datetime | None, now: datetime) -> bool:
    """May a claim take this row now (its person's queue aside: ``sync.model.claimable``)?"""
    return status is Status.PENDING and next_attempt_at <= now and not lease_running(lease_expires_at, now)


def settled(settlement: Settlement, now: datetime) -> list[tuple[int, dict[str, Any], bool]]:
    """What one delivery round writes, per row: ``(row id, column values, whether it counts as a try)``. Each
    change applies only to a row ``held_by`` the settling owner; a released row was not tried and is due now."""
    free = {**FREED, "updated_at": now}
    changes = [(row_id, {**free, "status": Status.DELIVERED, "last_error": None}, True)
               for row_id in settlement.delivered]
    changes += [(row_id, {**free, "next_attempt_at": at, "last_error": error[:TEXT_CHARS]}, True)
                for row_id, at, error in settlement.retry]
    changes += [(row_id, {**free, "status": Status.DEAD, "reason": reason[:TEXT_CHARS]}, True)
                for row_id, reason in settlement.dead]
    changes += [(row_id, released(now), False) for row_id in settlement.released]
    return changes


def released(now: datetime) -> dict[str, Any]:
    """A lease given back (a round not sent, a clean shutdown): free, and due again now (while leased, a row's
    next attempt is its lease's end)."""
    return {**FREED, "next_attempt_at": now, "updated_at": now}


def reaped() -> dict[str, Any]:
    """A lease whose owner died: free again; the row stays due when it was (its lease's end)."""
    return dict(FREED)


def deletion_forgotten(status: Status, mapped: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A deletion Iterable accepted (``Settlement.forgotten``) named the user until then: it becomes a
    tombstone under the hash its forget gave it. None: the row was not delivered, it stays as it is."""
    if status is not Status.DELIVERED:
        return None
    digest = str((mapped or {}).get("forget_hash", ""))
    return {"payload": tombstone(digest), "mapped": None, "user_key": forgotten_key(digest)}


# -- recording --------------------------------------------------------------------------------------------------

def first_copies(batch: Sequence[NewEvent]) -> list[NewEvent]:
    """One event per (direction, key): the first copy wins, a later copy in the same batch is a duplicate."""
    unique: dict[tuple[Direction, str], NewEvent] = {}
    for e in batch:
        unique.setdefault((e.direction, e.key), e)
    return list(unique.values())


def release_of(event: NewEvent, now: datetime) -> dict[str, Any]:
    """What a held row (status ``HOLD``) among ``event.replaces`` becomes once ``event`` is recorded."""
    return {"status": Status.SKIPPED, "reason": f"released as {event.key}", "updated_at": now}


def hold_expired(now: datetime) -> dict[str, Any]:
    """What a held row becomes when its visitor was never identified in time (SPEC section 11)."""
    return {"status": Status.SKIPPED, "reason": "anonymous, never identified", "updated_at": now}


def merged(status: Status, user_key: str | None, merges: Mapping[str, str]) -> str | None:
    """The person key a row moves to when its person merged into another (``people.link``); None: it stays."""
    return merges.get(user_key) if status is MERGED and user_key is not None else None


def consent_rows(batch: Sequence[NewEvent], now: datetime) -> list[dict[str, Any]]:
    """One consent row per identifier of each event that carried consent (the last event of a batch wins)."""
    latest: dict[str, dict[str, bool]] = {}
    for e in batch:
        if e.consent is not None and not e.forgets:
            latest.update(dict.fromkeys(e.identities, e.consent))
    return [{"identifier": k, "categories": v, "updated_at": now} for k, v in latest.items()]


# -- reading and operating -----------------------------------------------------------------------------------

def forgotten(user_key: str | None) -> bool:
    """Does the row hold a forgotten person's tombstone? Requeueing one would send the tombstone upstream."""
    return user_key is not None and user_key.startswith(FORGOTTEN_PREFIX)


def requeueable(status: Status, user_key: str | None) -> bool:
    """May ``ledger retry`` send this row again as recorded (``sync.requeue``)? A dead row not forgotten."""
    return status is REQUEUED and not forgotten(user_key)


def requeued(now: datetime) -> dict[str, Any]:
    """A requeued row: pending, due now, with a fresh retry window (``received_at`` stays: when it arrived)."""
    return {**FREED, "status": Status.PENDING, "next_attempt_at": now, "retry_from": now, "reason": None,
            "updated_at": now}


def redecided(change: Remapped, now: datetime) -> dict[str, Any]:
    """A row decided again under the current mapping (``ledger retry --remap``): its new call, digest and
    status; due now with a fresh retry window. It applies only to a row still in the status it was read in
    (``change.was``) and not leased meanwhile: a row being sent keeps the call it is being sent with."""
    return {**FREED, "status": change.status, "mapped": change.mapped, "mapping_digest": change.mapping_digest,
            "reason": change.reason, "next_attempt_at": now, "retry_from": now, "updated_at": now}


def purgeable(status: Status, updated_at: datetime, older_than: datetime) -> bool:
    return status in PURGED and updated_at < older_than


# -- forgetting -------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What a forget needs of one row."""

    id: int
    direction: Direction
    key: str
    status: Status
    reason: str | None
    payload: Mapping[str, Any]
    mapped: Mapping[str, Any] | None
    user_key: str | None = None


def identity_hash(identifiers: Iterable[str]) -> str:
    """A sha256 of the person's identifiers: what a tombstone keeps to answer "was X forgotten?"."""
    return hashlib.sha256("\x1f".join(sorted(set(identifiers))).encode(errors="surrogatepass")).hexdigest()


def tombstone(digest: str) -> dict[str, Any]:
    return {"forgotten": True, "identifiers_sha256": digest}


def forgotten_key(digest: str) -> str:
    return f"{FORGOTTEN_PREFIX}{digest[:32]}"


def lookups(identifier: str) -> list[str]:
    """The stored identifiers that may name the person ``identifier`` names: its normal form, and the forms
    links recorded before identifiers were normalised may hold."""
    kind, _, value = identifier.partition(":")
    if kind == "e":
        return sorted({identifier, *(f"e:{f.lower()}" for f in people.forms(value))})
    return sorted({identifier, *(f"u:{f}" for f in people.forms(value))})


def erase(row: Stored, identifiers: Sequence[str], digest: str, now: datetime, why: str) -> dict[str, Any]:
    """The column values that forget one row: a tombstone payload, no call, no error, a scrubbed reason
    (``why`` for a row that was still waiting, which becomes skipped)."""
    waiting = row.status in WAITING
    values: dict[str, Any] = {
        "payload": tombstone(digest), "mapped": None, "last_error": None, "user_key": forgotten_key(digest),
        "reason": why if waiting else scrub(row.reason, identifiers), "updated_at": now, **FREED}
    if waiting:
        values["status"] = Status.SKIPPED
    if row.key.startswith(PER_PERSON_KEY_PREFIXES):  # its key names the person, not an event: free it
        values["key"] = f"{row.key}{FORGOTTEN_KEY_SUFFIX}{row.id}"
    return values


# keys a row gets from the person it names rather than from an event (one registration per person and push
# token): after a forget the same registration is a new person's (the deletion took the device with the user)
PER_PERSON_KEY_PREFIXES = ("token:",)
FORGOTTEN_KEY_SUFFIX = ":forgotten-"


def forgetting(row: Stored, identifiers: Sequence[str], digest: str, now: datetime, *,
               keep: tuple[Direction, str] | None, why: str) -> dict[str, Any]:
    """What a forget writes to one of the person's rows: ``keep`` (a deletion still to be sent) only learns the
    hash it will be forgotten with once delivered (``deletion_forgotten``); any other row is erased."""
    if keep == (row.direction, row.key):
        return {"mapped": {**(row.mapped or {}), "forget_hash": digest}}
    return erase(row, identifiers, digest, now, why)


def erased(changes: Iterable[Mapping[str, Any]]) -> int:
    """How many of a forget's changes made a tombstone (what ``forget`` reports)."""
    return sum("payload" in values for values in changes)


def visitors(rows: Iterable[Stored]) -> set[str]:
    """The hold keys (``anon:<anonymousId>``) of the anonymous ids the person's events carried."""
    found = set()
    for row in rows:
        anonymous = row.payload.get("anonymousId") if isinstance(row.payload, Mapping) else None
        if isinstance(anonymous, str | int) and not isinstance(anonymous, bool) and str(anonymous).strip():
            found.add(f"{HOLD_PREFIX}{str(anonymous).strip()[:200]}")
    return found


def originals(rows: Iterable[Stored]) -> set[str]:
    """Keys of the held originals the person's released rows replaced (``<key>:released`` <- ``<key>``)."""
    return {row.key.removesuffix(RELEASED_SUFFIX) for row in rows
            if row.direction is Direction.OUTBOUND and row.key.endswith(RELEASED_SUFFIX)}


def anonymous_of(row: Stored, wanted: set[str], holds: set[str]) -> bool:
    """Is ``row`` one of the person's anonymous rows: a held original (``originals``) their released rows came
    from, or a row still held under an anonymous id they used (``visitors``)?"""
    if row.user_key is None or not row.user_key.startswith(HOLD_PREFIX):
        return False
    return (row.direction is Direction.OUTBOUND and row.key in wanted
            or row.user_key in holds and row.status is Status.HELD)


def scrub(text: str | None, identifiers: Iterable[str]) -> str | None:
    """``text`` with every spelling of the person's identifiers taken out (Iterable's reasons may quote them).
    The longest spellings go first: a userId that is part of the email (``ann``, ``ann@example.com``) must not
    cut the email in two and leave its rest behind."""
    if not text:
        return text
    for form in spellings(identifiers):
        text = re.sub(re.escape(form), "[forgotten]", text, flags=re.IGNORECASE)
    return text


def spellings(identifiers: Iterable[str]) -> list[str]:
    """Every spelling of the values of ``sync.people`` identifiers that stored text may hold, longest first."""
    found = {form for ident in identifiers for form in people.forms(ident.partition(":")[2])}
    return sorted(found, key=lambda f: (-len(f), f))


def up_to_each_deletion(rows: Sequence[NewEvent]) -> list[list[NewEvent]]:
    """``rows`` in order, cut after each deletion: a deletion forgets what came before it, and what follows it
    in the same batch is recorded after it, as a new person (SPEC section 11). One part when there is none."""
    parts: list[list[NewEvent]] = [[]]
    for row in rows:
        parts[-1].append(row)
        if row.forgets:
            parts.append([])
    return [part for part in parts if part]
