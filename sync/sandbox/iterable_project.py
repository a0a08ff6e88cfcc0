"""The state of a fake Iterable project, with the behaviours of the real one (fidelity.md Part 3).

- Project types decide how a request names a person: ``email`` projects by email, ``userId`` projects by
  userId, ``hybrid`` by userId when one is given, else by email; hybrid projects keep both unique.
- Writes are processed asynchronously, in two queues: bulk calls and single calls each apply after a
  delay of their own, so the order requests were sent in is not the order Iterable applies them in.
- A user created by a write becomes visible to other calls only ``visibility_lag`` seconds after it was
  applied (Iterable asks for 60 s). Events for a user nobody can see yet are "not found", except that
  in userId and hybrid projects an event naming a userId creates the user.
- A data field's type is fixed by its first value; a later value of another type fails the whole request
  (400 ``RequestFieldsTypesMismatched`` naming each field and its type; the rules are ``iterable_fields``).
- Forgotten (GDPR) identifiers refuse every later write.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sync.sandbox import iterable_fields
from sync.sandbox.iterable_rules import valid_email as is_email

PROJECT_TYPES = ("email", "userId", "hybrid")


class ItemError(Exception):
    """A refused item: ``kind`` is the bulk failure list it goes to (``""``: only a 400)."""

    def __init__(self, kind: str, value: str, msg: str, status: int = 400, code: str = "BadParams") -> None:
        self.kind, self.value, self.msg, self.status, self.code = kind, value, msg, status, code
        super().__init__(msg)


class TypeMismatch(ItemError):
    """Values of another type than their fields': Iterable refuses the whole request (400), naming each field in
    ``params.validationErrors`` (the shape a public Iterable client parses: ``"<project>:::<field>"`` ->
    ``incomingTypes``, ``expectedType``, ``category``, ``offendingValue``)."""

    def __init__(self, wrong: list[tuple[str, str, str | None, Any]], category: str) -> None:
        super().__init__("", "", "Project 1: The request does not have the same data types as the project's fields",
                         code="RequestFieldsTypesMismatched")
        self.params = {"validationErrors": {
            f"1:::{path}": {"incomingTypes": [got], "expectedType": locked, "category": category,
                            "offendingValue": value, "_type": "UnexpectedType"} for path, locked, got, value in wrong}}


@dataclass(slots=True, kw_only=True)
class Queue:
    max_delay: float = 0.0
    ops: deque[tuple[float, Callable[[], None]]] = field(default_factory=deque)
    last: float = 0.0


class Project:
    """Users, events, purchases and carts of one project, changed only by the two processing queues."""

    def __init__(self, *, project_type: str = "hybrid", visibility_lag: float = 0.0,
                 bulk_delay: float = 0.0, single_delay: float = 0.0, seed: int = 0) -> None:
        if project_type not in PROJECT_TYPES:
            raise ValueError(f"project_type must be one of {PROJECT_TYPES}")
        self.project_type, self.visibility_lag = project_type, visibility_lag
        self.queues = {"bulk": Queue(max_delay=bulk_delay), "single": Queue(max_delay=single_delay)}
        self.rng = random.Random(seed)
        self.users: list[dict[str, Any]] = []
        self.visible_at: dict[int, float] = {}  # id(user) -> when other calls can see it
        self.field_types: dict[str, str] = {}  # user fields (dotted names) -> Iterable's type, fixed by the first write
        self.event_field_types: dict[str, dict[str, str]] = {}  # per custom event name, the same
        self.created_fields: list[str] = []  # fields the request being checked created (``createdFields``)
        self.forgotten: set[str] = set()
        self.events: dict[str, dict[str, Any]] = {}
        self.event_log: list[dict[str, Any]] = []
        self.purchases: dict[str, dict[str, Any]] = {}
        self.carts: dict[str, list[Any]] = {}
        self.email_changes: list[dict[str, Any]] = []
        self.applied: list[tuple[str, str]] = []  # (queue, what) in the order Iterable processed them
        self.silent_subscription_changes: list[dict[str, Any]] = []  # written as dataFields: no events

    # -- time -----------------------------------------------------------------------------------

    def enqueue(self, queue: str, now: float, what: str, apply: Callable[[], object]) -> None:
        q = self.queues[queue]
        q.last = max(q.last, now + self.rng.uniform(0, q.max_delay))  # FIFO within one queue

        def run() -> None:
            apply()
            self.applied.append((queue, what))

        q.ops.append((q.last, run))
        self.process(now)

    def process(self, now: float, *, everything: bool = False) -> None:
        """Apply every queued write that is due (all of them with ``everything``), each queue in order."""
        while True:
            ready = [(q.ops[0][0], name) for name, q in self.queues.items()
                     if q.ops and (everything or q.ops[0][0] <= now)]
            if not ready:
                return
            _, name = min(ready)
            _, apply = self.queues[name].ops.popleft()
            apply()

    def pending(self) -> int:
        return sum(len(q.ops) for q in self.queues.values())

    # -- who is who -----------------------------------------------------------------------------

    def naming(self, body: dict[str, Any]) -> tuple[str, str]:
        """(field, value) the request names its person by, under the project's rules."""
        email, user_id = body.get("email"), body.get("userId")
        if email is not None and not is_email(email):
            raise ItemError("invalidEmails", str(email), f"Invalid email: {email}", code="InvalidEmailAddressError")
        if user_id is not None and (not isinstance(user_id, str) or not user_id or len(user_id) > 52
                                    or user_id != user_id.strip()):
            raise ItemError("invalidUserIds", str(user_id), f"Invalid userId: {user_id}")
        if self.project_type == "email":
            if email:
                return "email", email
            if user_id and body.get("preferUserId"):
                return "userId", user_id
            raise ItemError("", "", "email is required in an email-based project")
        if user_id:
            return "userId", user_id
        if email and self.project_type == "hybrid":
            return "email", email
        raise ItemError("", "", "userId is required in a userId-based project" if self.project_type == "userId"
                        else "email or userId is required")

    def find(self, by: str, value: Any, now: float | None = None) -> dict[str, Any] | None:
        """The applied user named so (only a visible one when ``now`` is given). Emails match without regard
        to letter case (Iterable lower-cases them: ``GET /api/users/forgotten``); userIds are case-sensitive."""
        wanted = _matched(by, value)
        for user in self.users:
            if value is not None and _matched(by, user.get(by)) == wanted:
                if now is None or self.visible_at.get(id(user), 0.0) <= now:
                    return user
        return None

    def _forgotten(self, by: str, value: str) -> None:
        if f"{by}:{value}" in self.forgotten:
            kind = "forgottenEmails" if by == "email" else "forgottenUserIds"
            raise ItemError(kind, value, "Contact is GDPR forgotten", status=409, code="GDPRForgotten")

    # -- checks at request time -----------------------------------------------------------------

    def check_user(self, body: dict[str, Any]) -> tuple[str, str]:
        """Refuse a user write Iterable would refuse: bad ids, forgotten, conflicts, field types."""
        by, value = self.naming(body)
        self._forgotten(by, value)
        fields: dict[str, Any] = body["dataFields"] if isinstance(body.get("dataFields"), dict) else {}
        if fields.get("email") is not None and not is_email(fields["email"]):
            raise ItemError("invalidDataEmails" if by == "email" else "invalidDataUserIds", value,
                            "Invalid email in dataFields.email", code="InvalidEmailAddressError")
        new_email = self._new_email(body, fields)
        if new_email and self.project_type == "hybrid":
            owner = self.find("email", new_email)
            me = self.find(by, value)
            if owner is not None and owner is not me:
                raise ItemError("conflictEmails" if by == "email" else "conflictUserIds", value,
                                f"Email {new_email} already belongs to another user", status=409,
                                code="EmailAlreadyExists")
        self._check_types(self.field_types, fields, "user")
        return by, value

    def _new_email(self, body: dict[str, Any], fields: dict[str, Any]) -> str | None:
        """The email a write gives its user: ``dataFields.email`` (userId, hybrid), or the naming email."""
        if self.project_type in ("userId", "hybrid") and is_email(fields.get("email")):
            return str(fields["email"])
        return body.get("email") if self.project_type == "hybrid" and not body.get("userId") else None

    def check_event(self, body: dict[str, Any], now: float) -> None:
        """An event for a user nobody can see yet is "not found" (a userId creates one in userId/hybrid)."""
        by, value = self.naming(body)
        self._forgotten(by, value)
        if not (by == "userId" and self.project_type in ("userId", "hybrid")) and self.find(by, value, now) is None:
            kind = "notFoundEmails" if by == "email" else "notFoundUserIds"
            raise ItemError(kind, value, f"User does not exist. {by}: {value}")
        fields = body["dataFields"] if isinstance(body.get("dataFields"), dict) else {}
        self._check_types(self.event_field_types.setdefault(str(body.get("eventName")), {}), fields, "event")

    def _check_types(self, types: dict[str, str], fields: dict[str, Any], category: str) -> None:
        """A value of another type than the field's first one fails the request; new fields are locked."""
        wrong = iterable_fields.mismatches(types, fields)
        if wrong:
            raise TypeMismatch(wrong, category)
        self.created_fields += iterable_fields.lock(types, fields)

    def types_snapshot(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """The field types as they are, to put back when a whole request is refused."""
        return dict(self.field_types), {name: dict(types) for name, types in self.event_field_types.items()}

    def restore_types(self, snapshot: tuple[dict[str, str], dict[str, dict[str, str]]]) -> None:
        self.field_types, self.event_field_types = snapshot

    # -- writes, applied by the queues ----------------------------------------------------------

    def upsert(self, body: dict[str, Any], now: float) -> dict[str, Any]:
        by, value = self.naming(body)
        fields = dict(body.get("dataFields") or {})
        user = self.find(by, value)
        if user is None:
            user = {"email": None, "userId": None, "dataFields": {}}
            user[by] = value
            if by == "userId" and self.project_type == "email":
                user["email"] = f"{value}@placeholder.email"
            self.users.append(user)
            self.visible_at[id(user)] = now + self.visibility_lag
        if self.project_type == "email" and isinstance(body.get("userId"), str):
            user["userId"] = body["userId"]
        new_email = self._new_email(body, fields)
        if self.project_type in ("userId", "hybrid"):
            fields.pop("email", None)
        if new_email and (self.find("email", new_email) in (None, user)):
            if user.get("email") and user["email"] != new_email and by == "userId":
                self.email_changes.append({"from": user["email"], "to": new_email})
            user["email"] = new_email
        silent = {k: fields[k] for k in ("emailListIds", "unsubscribedChannelIds", "unsubscribedMessageTypeIds")
                  if k in fields}
        if silent:  # Iterable applies these as subscription state, without subscribe/unsubscribe events
            self.silent_subscription_changes.append(silent)
        if body.get("mergeNestedObjects"):
            for key, item in fields.items():
                old = user["dataFields"].get(key)
                user["dataFields"][key] = {**old, **item} if isinstance(old, dict) and isinstance(item, dict) else item
        else:
            user["dataFields"].update(fields)
        return user

    def track(self, body: dict[str, Any], now: float) -> None:
        by, value = self.naming(body)
        if self.find(by, value) is None and by == "userId":
            self.upsert({"userId": value}, now)  # userId and hybrid projects create the user
        event_id = str(body.get("id") or f"auto-{len(self.event_log)}")
        self.events[event_id] = body
        self.event_log.append(body)

    def update_email(self, current: dict[str, Any], new: str) -> None:
        self.email_changes.append({"from": current["email"], "to": new})
        current["email"] = new

    def remove(self, user: dict[str, Any]) -> None:
        """Delete a user (its identifiers may be used again: this is not a forget)."""
        if user in self.users:
            self.users.remove(user)

    def forget(self, email: str | None = None, user_id: str | None = None) -> None:
        """Forget a user (GDPR): the profile goes, and its identifiers refuse every later write."""
        for by, value in (("email", email), ("userId", user_id)):
            if value:
                self.forgotten.add(f"{by}:{value}")
                user = self.find(by, value)
                if user is not None:
                    self.users.remove(user)


def _matched(by: str, value: Any) -> Any:
    """An identifier as the project compares it: an email lower-cased, a userId as it is."""
    return value.lower() if by == "email" and isinstance(value, str) else value
