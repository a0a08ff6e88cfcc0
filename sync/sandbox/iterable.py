"""A fake Iterable API, faithful to Iterable's spec where the daemon depends on it.

Auth by ``Api-Key`` (401 ``BadApiKey``), envelope bodies, 400 for bad JSON or parameters, bulk
responses with ``failedUpdates``, 413 over 4 MB, 429 over the documented per-project rate limits,
users created by users/update, bulkUpdate and commerce calls but not by events, event ``id`` upserts.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from sync.sandbox.faults import Faults
from sync.segment_events import is_email

MAX_BODY = 4 * 1024 * 1024
LIMITS = {"users/update": 500, "users/bulkUpdate": 5, "events/track": 2000, "events/trackBulk": 10,
          "export/data.json": 4 / 60}
FAILURE_KEYS = ("conflictEmails", "conflictUserIds", "forgottenEmails", "forgottenUserIds", "invalidDataEmails",
                "invalidDataUserIds", "invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds")


def envelope(msg: str, code: str = "Success", params: Any = None, status: int = 200) -> web.Response:
    return web.json_response({"msg": msg, "code": code, "params": params}, status=status)


class ItemError(Exception):
    def __init__(self, kind: str, value: str, msg: str) -> None:
        self.kind, self.value, self.msg = kind, value, msg
        super().__init__(msg)


class FakeIterable:
    def __init__(self, api_key: str = "iterable-test-key", *, enforce_rate_limits: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_key = api_key
        self.enforce_rate_limits, self.clock = enforce_rate_limits, clock
        self.faults = Faults()
        self.reset()

    def reset(self) -> None:
        self.users: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}  # by event id (same id = update)
        self.event_log: list[dict[str, Any]] = []  # every event accepted, in order
        self.purchases: dict[str, dict[str, Any]] = {}
        self.carts: dict[str, list[Any]] = {}
        self.email_changes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, Any]] = []  # requests served normally (not faulted)
        self.hits: list[tuple[str, float]] = []  # every request that arrived, with its monotonic time
        self.export_records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.disallowed_event_names: set[str] = set()
        self.poison_emails: set[str] = set()  # any request carrying one is a whole-request 400
        self.invalid_data_emails: set[str] = set()  # bulk items reported in failedUpdates.invalidDataEmails
        self._windows: dict[str, list[float]] = defaultdict(list)
        self.faults.clear()

    # -- app ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY * 2)
        routes = {
            "users/update": self._users_update, "users/bulkUpdate": self._users_bulk_update,
            "events/track": self._events_track, "events/trackBulk": self._events_track_bulk,
            "commerce/trackPurchase": self._track_purchase, "commerce/updateCart": self._update_cart,
            "users/updateEmail": self._update_email,
        }
        for endpoint, handler in routes.items():
            app.router.add_post(f"/api/{endpoint}", self._wrap(endpoint, handler))
        app.router.add_get("/api/export/data.json", self._wrap("export/data.json", self._export))
        app.router.add_get("/api/webhooks", self._wrap("webhooks", self._webhooks))
        app.router.add_get("/_fake/state", self._state)
        return app

    def _wrap(self, endpoint: str, handler: Callable[[Any], Any]) -> Callable[[web.Request], Awaitable[Any]]:
        async def serve(request: web.Request) -> Any:
            self.hits.append((endpoint, self.clock()))
            injected = await self.faults.apply(request)
            if injected is not None:
                return injected
            if request.headers.get("Api-Key", request.headers.get("Api_Key")) != self.api_key:
                return envelope("Invalid API key", "BadApiKey", {"endpoint": f"/api/{endpoint}"}, 401)
            if self._over_limit(endpoint):
                return envelope("Rate limit exceeded", "RateLimitExceeded", None, 429)
            if request.method == "GET":
                return await handler(request)
            raw = await request.read()
            if len(raw) > MAX_BODY:
                return envelope("Request body too large", "BatchTooLarge", None, 413)
            try:
                body = json.loads(raw)
            except ValueError:
                return envelope(f"[/api/{endpoint}] Invalid JSON body", "BadJsonBody", None, 400)
            if not isinstance(body, dict):
                return envelope(f"[/api/{endpoint}] Invalid JSON body", "BadJsonBody", None, 400)
            self.requests.append((endpoint, body))
            if self._poisoned(body):
                return envelope("Project 1: The request does not have the same data types",
                                "RequestFieldsTypesMismatched", {"validationErrors": {}}, 400)
            return handler(body)

        return serve

    def _over_limit(self, endpoint: str) -> bool:
        limit = LIMITS.get(endpoint)
        if not self.enforce_rate_limits or limit is None:
            return False
        window = 60.0 if limit < 1 else 1.0
        allowed = max(1, round(limit * window))
        now = self.clock()
        recent = [t for t in self._windows[endpoint] if now - t < window]
        self._windows[endpoint] = recent
        if len(recent) >= allowed:
            return True
        recent.append(now)
        return False

    def _poisoned(self, body: dict[str, Any]) -> bool:
        return bool(self.poison_emails) and any(e in json.dumps(body) for e in self.poison_emails)

    # -- users ----------------------------------------------------------------------------------

    def add_users(self, count: int, prefix: str) -> None:
        """Seed users ``<prefix>0`` .. (email ``<prefix>N@example.com``) that events may name right away."""
        self.users.extend({"email": f"{prefix}{n}@example.com", "userId": f"{prefix}{n}", "dataFields": {}}
                          for n in range(count))

    def find_user(self, email: Any = None, user_id: Any = None) -> dict[str, Any] | None:
        for user in self.users:
            if (email and user.get("email") == email) or (user_id and user.get("userId") == user_id):
                return user
        return None

    def _identify(self, body: dict[str, Any]) -> tuple[str, str]:
        email, user_id = body.get("email"), body.get("userId")
        if email is None and user_id is None:
            raise ItemError("", "", "email or userId is required")
        if email is not None and not is_email(email):
            raise ItemError("invalidEmails", str(email), f"Invalid email: {email}")
        if user_id is not None and (not isinstance(user_id, str) or not user_id or len(user_id) > 52
                                    or user_id != user_id.strip()):
            raise ItemError("invalidUserIds", str(user_id), f"Invalid userId: {user_id}")
        return email or "", user_id or ""

    def _upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        email, user_id = self._identify(body)
        if email in self.invalid_data_emails:
            raise ItemError("invalidDataEmails", email, "invalid data")
        user = self.find_user(email, user_id)
        if user is None:
            user = {"email": email or f"{user_id}@placeholder.email", "userId": user_id or None, "dataFields": {}}
            self.users.append(user)
        if user_id:
            user["userId"] = user_id
        fields = body.get("dataFields") or {}
        if body.get("mergeNestedObjects"):
            for key, value in fields.items():
                old = user["dataFields"].get(key)
                user["dataFields"][key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        else:
            user["dataFields"].update(fields)
        return user

    def _users_update(self, body: dict[str, Any]) -> web.Response:
        try:
            self._upsert(body)
        except ItemError as exc:
            code = "InvalidEmailAddressError" if exc.kind == "invalidEmails" else "BadParams"
            return envelope(exc.msg, code, None, 400)
        return envelope("User update requested", "Success")

    def _users_bulk_update(self, body: dict[str, Any]) -> web.Response:
        users = body.get("users")
        if not isinstance(users, list):
            return envelope("users is required", "BadParams", None, 400)
        return web.json_response(self._bulk(users, self._upsert))

    def _bulk(self, items: list[Any], apply: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        failed: dict[str, list[str]] = {key: [] for key in FAILURE_KEYS}
        disallowed: list[str] = []
        ok = 0
        for item in items:
            try:
                apply(item if isinstance(item, dict) else {})
                ok += 1
            except ItemError as exc:
                if exc.kind == "disallowedEventNames":
                    disallowed.append(exc.value)
                elif exc.kind:
                    failed[exc.kind].append(exc.value)
        return {"successCount": ok, "failCount": len(items) - ok, "createdFields": [], "filteredOutFields": [],
                "disallowedEventNames": disallowed, "invalidEmails": failed["invalidEmails"],
                "invalidUserIds": failed["invalidUserIds"], "failedUpdates": failed}

    # -- events ---------------------------------------------------------------------------------

    def _track(self, body: dict[str, Any]) -> None:
        name = body.get("eventName")
        if not isinstance(name, str) or not name:
            raise ItemError("", "", "eventName is required")
        if name in self.disallowed_event_names:
            raise ItemError("disallowedEventNames", name, f"event name {name} is not allowed")
        email, user_id = self._identify(body)
        if self.find_user(email, user_id) is None:
            kind, value = ("notFoundUserIds", user_id) if user_id and not email else ("notFoundEmails", email)
            raise ItemError(kind, value, f"User does not exist. Email: {email} UserId: {user_id}")
        if "createdAt" in body and not isinstance(body["createdAt"], int):
            raise ItemError("", "", "createdAt: Number value expected")
        event_id = str(body.get("id") or f"auto-{len(self.event_log)}")
        self.events[event_id] = body
        self.event_log.append(body)

    def _events_track(self, body: dict[str, Any]) -> web.Response:
        try:
            self._track(body)
        except ItemError as exc:
            return envelope(exc.msg, "BadParams", None, 400)
        return envelope(f"Event with id: {body.get('id')} tracked.", "Success", {"id": body.get("id")})

    def _events_track_bulk(self, body: dict[str, Any]) -> web.Response:
        events = body.get("events")
        if not isinstance(events, list):
            return envelope("events is required", "BadParams", None, 400)
        return web.json_response(self._bulk(events, self._track))

    # -- commerce and email ---------------------------------------------------------------------

    def _commerce_user(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("user"), dict):
            raise ItemError("", "", "user is required")
        items = body.get("items")
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and {"id", "name", "price", "quantity"} <= i.keys() for i in items
        ):
            raise ItemError("", "", "items: each needs id, name, price and quantity")
        return self._upsert(body["user"])

    def _track_purchase(self, body: dict[str, Any]) -> web.Response:
        try:
            user = self._commerce_user(body)
            if not isinstance(body.get("total"), int | float):
                raise ItemError("", "", "total is required")
        except ItemError as exc:
            return envelope(exc.msg, "BadParams", None, 400)
        self.purchases[str(body.get("id") or len(self.purchases))] = body
        self.carts[user["email"]] = []
        return envelope("Purchase tracked", "Success")

    def _update_cart(self, body: dict[str, Any]) -> web.Response:
        try:
            user = self._commerce_user(body)
        except ItemError as exc:
            return envelope(exc.msg, "BadParams", None, 400)
        self.carts[user["email"]] = body["items"]
        return envelope("Cart updated", "Success")

    def _update_email(self, body: dict[str, Any]) -> web.Response:
        new = body.get("newEmail")
        user = self.find_user(body.get("currentEmail"), body.get("currentUserId"))
        if not is_email(new):
            return envelope(f"Invalid email: {new}", "InvalidEmailAddressError", None, 400)
        if user is None:
            return envelope("User does not exist", "BadParams", None, 400)
        if self.find_user(new) is not None:
            return envelope("Email/userId conflict", "EmailAlreadyExists", None, 409)
        self.email_changes.append({"from": user["email"], "to": new})
        user["email"] = new
        return envelope("Email updated", "Success")

    # -- export and misc ------------------------------------------------------------------------

    async def _export(self, request: web.Request) -> web.StreamResponse:
        kind = request.query.get("dataTypeName")
        start, end = request.query.get("startDateTime"), request.query.get("endDateTime")
        if not kind or not (request.query.get("range") or (start and end)):
            return envelope("dataTypeName and a range or startDateTime/endDateTime are required", "BadParams",
                            None, 400)
        lines = [json.dumps(r) for r in self.export_records.get(kind, []) if _in_window(r, start, end)]
        return web.Response(text="".join(f"{line}\n" for line in lines), content_type="application/x-json-stream")

    async def _webhooks(self, request: web.Request) -> web.Response:
        return web.json_response({"webhooks": []})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response({"users": self.users, "events": self.event_log, "purchases": self.purchases,
                                  "carts": self.carts, "email_changes": self.email_changes,
                                  "requests": [endpoint for endpoint, _ in self.requests]})


def _in_window(record: dict[str, Any], start: str | None, end: str | None) -> bool:
    created = record.get("createdAt")
    if not (start and end and isinstance(created, str)):
        return True
    fmt = "%Y-%m-%d %H:%M:%S"
    try:
        when = datetime.strptime(created[:19], fmt)
        return datetime.strptime(start[:19], fmt) <= when < datetime.strptime(end[:19], fmt)
    except ValueError:
        return False
