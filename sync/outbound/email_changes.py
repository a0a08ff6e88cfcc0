"""Email changes in email-based projects (SPEC section 5): an identify that gives a userId a new email
becomes ``users/updateEmail`` (the email the ledger last sent for that userId -> the new one), recorded just
before the identify's own ``users/update``, for the same person.

Iterable's email projects name a user by email: an identify's ``users/update`` naming the new email would
create a second profile, and the history would stay on the old one. ``users/updateEmail`` moves the profile
to the new email ("Use this endpoint with email-based projects", [spec] ``POST /api/users/updateEmail``).

Emails are compared in their normal form (``sync.people.normal_email``: trimmed, NFKC, lower-cased): Iterable
treats an email's letter case as the same address (it lower-cases emails, e.g. the hashes of
``GET /api/users/forgotten``), so a change of case alone is no email change.

The decision is pure: the ledger looks up what each userId's person last sent (``sync.model.last_email``) and calls
``with_changes`` inside the transaction that records the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sync import people
from sync.model import NewEvent, Status
from sync.outbound.mapper import UPDATE_EMAIL, USERS_UPDATE, IterableCall

KIND = "email change"  # one of sync.model.EMAIL_KINDS
SUFFIX = ":email"


def asked(rows: Sequence[NewEvent]) -> list[str]:
    """The userId identifiers (``u:<userId>``) whose last email the ledger is asked for (``Known.email``): those of identifies
    whose ``users/update`` names both an email and a userId (only email projects name a user that way)."""
    return [ident for row in rows if _change_of(row) for ident in row.identities[:1]]


def with_changes(rows: Sequence[NewEvent], known: Mapping[str, str]) -> list[NewEvent]:
    """``rows``, each identify that gives its userId another email preceded by its email change row.

    ``known`` is ``u:<userId>`` -> the email last sent for that userId's person (``sync.model.last_email`` of their
    latest row of ``EMAIL_KINDS`` still pending or delivered). Rows are read in order: an earlier identify of the same
    batch counts as the last one sent."""
    last = dict(known)
    out: list[NewEvent] = []
    for row in rows:
        who = _change_of(row)
        if who is None:
            out.append(row)
            continue
        ident, email = who
        before = last.get(ident)
        if before is not None and people.normal_email(before) != people.normal_email(email):
            out.append(change_row(row, before, email))
        last[ident] = email
        out.append(row)
    return out


def change_row(identify: NewEvent, current: str, new: str) -> NewEvent:
    """The ``users/updateEmail`` row an identify brings along: same person (its identifiers and the old
    email's), its own idempotency key, the identify's event as payload."""
    call = IterableCall(endpoint=UPDATE_EMAIL, body={"currentEmail": current, "newEmail": new},
                        user_key=identify.user_key)
    return replace(identify, key=f"{identify.key}{SUFFIX}", kind=KIND, mapped=call.frozen(),
                   identities=people.of(*identify.identities, people.email_identifier(current)),
                   consent=None, replaces=(), forgets=False, also=None, label=None, reason=None)


def _change_of(row: NewEvent) -> tuple[str, str] | None:
    """(``u:<userId>``, email) of a pending identify whose users/update names a person by email and gives the
    userId as a field (how email projects name a user); None for any other row."""
    if row.kind != "identify" or row.status is not Status.PENDING or not row.mapped:
        return None
    if row.mapped.get("endpoint") != USERS_UPDATE:
        return None
    body = row.mapped.get("body")
    if not isinstance(body, Mapping) or body.get("preferUserId"):
        return None
    email, user_id = body.get("email"), body.get("userId")
    if not (isinstance(email, str) and isinstance(user_id, str) and email and user_id):
        return None
    ident = people.identifier(user_id)
    if ident is None or not ident.startswith("u:") or not row.identities or row.identities[0] != ident:
        return None
    return ident, email
