"""A fake Iterable API, as strict as the real one where the daemon depends on it.

Auth by ``Api-Key`` (401 ``BadApiKey``), envelope bodies, 400 for bad JSON or parameters, bulk
responses with ``failedUpdates``, 413 over 4,000,000 bytes on the wire, 429 without ``Retry-After`` over
the documented per-project rate limits. The project itself (project types, two processing queues,
visibility lag, field types, conflicts, forgotten users) is ``sync.sandbox.iterable_project``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from sync.sandbox.faults import Faults
from sync.sandbox.iterable_project import ItemError, Project, TypeMismatch
from sync.sandbox.iterable_rules import is_number, item_problem
from sync.sandbox.iterable_rules import valid_email as is_email

SUBSCRIPTION_FIELDS = ("emailListIds", "unsubscribedChannelIds", "unsubscribedMessageTypeIds",
                       "subscribedMessageTypeIds")

MAX_BODY = 4_000_000  # Iterable's "4MB", as RudderStack reads it: bytes on the wire
LIMITS = {"users/update": 500, "users/bulkUpdate": 5, "events/track": 2000, "events/trackBulk": 10,
          "users/updateSubscriptions": 500, "users/registerDeviceToken": 500, "users/registerBrowserToken": 500,
          "export/data.json": 4 / 60, "users/delete": 100, "users/forget": 3, "users/getFields": 3}
FORGETS_PER_DAY = 1000
FAILURE_KEYS = ("conflictEmails", "conflictUserIds", "forgottenEmails", "forgottenUserIds", "invalidDataEmails",
                "invalidDataUserIds", "invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds")


def envelope(msg: str, code: str = "Success", params: Any = None, status: int = 200) -> web.Response:
    return web.json_response({"msg": msg, "code": code, "params": params}, status=status)


def refused(exc: ItemError) -> web.Response:
    return envelope(exc.msg, exc.code, getattr(exc, "params", None), exc.status)


class FakeIterable:
    """The HTTP face of a fake project. ``project_type``, ``visibility_lag`` and the two queues' delays
    pick how strict it is; ``process()`` applies what is due (a background task does it every 10 ms)."""

    def __init__(self, api_key: str = "iterable-test-key", *, enforce_rate_limits: bool = True,
                 clock: Callable[[], float] = time.monotonic, project_type: str = "hybrid",
                 visibility_lag: float = 0.0, bulk_delay: float = 0.0, single_delay: float = 0.0,
                 seed: int = 0) -> None:
        self.api_key = api_key
        self.enforce_rate_limits, self.clock = enforce_rate_limits, clock
        self.settings: dict[str, Any] = {"project_type": project_type, "visibility_lag": visibility_lag,
                         "bulk_delay": bulk_delay, "single_delay": single_delay, "seed": seed}
        self.faults = Faults()
        self.reset()

    def reset(self, **settings: Any) -> None:
        self.settings.update(settings)
        self.project = Project(**self.settings)
        self.requests: list[tuple[str, Any]] = []  # requests served normally (not faulted)
        self.hits: list[tuple[str, float]] = []  # every request that arrived, with its monotonic time
        self.export_records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.disallowed_event_names: set[str] = set()
        self.poison_emails: set[str] = set()  # any request carrying one is a whole-request 400
        self.invalid_data_emails: set[str] = set()  # bulk items reported in failedUpdates.invalidDataEmails
        self.deletions: list[dict[str, str]] = []  # accepted DELETE requests
        self.subscription_events: list[dict[str, Any]] = []  # updateSubscriptions applied (Iterable records events)
        self.registrations: list[dict[str, Any]] = []  # every token registration applied, repeats included
        self.forgets: list[dict[str, str]] = []  # accepted forget requests (at most 1,000 a day)
        self.webhooks: list[dict[str, Any]] = []  # system webhooks (add_webhook), as GET /api/webhooks lists them
        self._windows: dict[str, list[float]] = defaultdict(list)
        self.faults.clear()

    # -- the project's state, as applied so far ---------------------------------------------------

    def process(self, *, everything: bool = False) -> None:
        self.project.process(self.clock(), everything=everything)

    @property
    def users(self) -> list[dict[str, Any]]:
        return self.project.users

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        return self.project.events

    @property
    def event_log(self) -> list[dict[str, Any]]:
        return self.project.event_log

    @property
    def purchases(self) -> dict[str, dict[str, Any]]:
        return self.project.purchases

    @property
    def carts(self) -> dict[str, list[Any]]:
        return self.project.carts

    @property
    def email_changes(self) -> list[dict[str, Any]]:
        return self.project.email_changes

    # -- app ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY * 2)
        routes = {
            "users/update": self._users_update, "users/bulkUpdate": self._users_bulk_update,
            "events/track": self._events_track, "events/trackBulk": self._events_track_bulk,
            "commerce/trackPurchase": self._track_purchase, "commerce/updateCart": self._update_cart,
            "users/updateEmail": self._update_email, "users/updateSubscriptions": self._update_subscriptions,
            "users/bulkUpdateSubscriptions": self._bulk_update_subscriptions,
            "users/registerDeviceToken": self._register_device, "users/registerBrowserToken": self._register_browser,
        }
        for endpoint, handler in routes.items():
            app.router.add_post(f"/api/{endpoint}", self._wrap(endpoint, handler))
        app.router.add_get("/api/export/data.json", self._wrap("export/data.json", self._export))
        app.router.add_delete("/api/users/byUserId/{userId}", self._wrap("users/delete", self._delete_by_user_id))
        app.router.add_delete("/api/users/{email}", self._wrap("users/delete", self._delete_by_email))
        app.router.add_post("/api/users/forget", self._wrap("users/forget", self._forget))
        app.router.add_get("/api/webhooks", self._wrap("webhooks", self._webhooks))
        app.router.add_get("/api/users/getFields", self._wrap("users/getFields", self._get_fields))
        app.router.add_get("/_fake/state", self._state)
        app.cleanup_ctx.append(self._processor)
        return app

    async def _processor(self, _: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                self.process()
                await asyncio.sleep(0.01)

        task = asyncio.create_task(run(), name="fake-iterable-queues")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _wrap(self, endpoint: str, handler: Callable[[Any], Any]) -> Callable[[web.Request], Awaitable[Any]]:
        async def serve(request: web.Request) -> Any:
            self.hits.append((endpoint, self.clock()))
            injected = await self.faults.apply(request)
            if injected is not None:
                return injected
            if request.headers.get("Api-Key", request.headers.get("Api_Key")) != self.api_key:
                return envelope("Invalid API key", "BadApiKey", {"endpoint": f"/api/{endpoint}"}, 401)
            if self._over_limit(endpoint):
                return envelope("Rate limit exceeded", "RateLimitExceeded", None, 429)  # no Retry-After
            if request.method in ("GET", "DELETE"):
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
            self.process()
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
        """Seed visible users ``<prefix>0`` .. (email ``<prefix>N@example.com``) that events may name at once."""
        for n in range(count):
            self.project.users.append({"email": f"{prefix}{n}@example.com", "userId": f"{prefix}{n}",
                                       "dataFields": {}})

    def find_user(self, email: Any = None, user_id: Any = None) -> dict[str, Any] | None:
        self.process()
        return self.project.find("userId", user_id) or self.project.find("email", email)

    @property
    def idle(self) -> bool:
        """Whether Iterable has processed every write it accepted (nothing waits in its queues)."""
        self.process()
        return self.project.pending() == 0

    def _check_user(self, body: dict[str, Any]) -> None:
        by, value = self.project.check_user(body)
        email = body.get("email") or (body.get("dataFields") or {}).get("email")
        if email in self.invalid_data_emails:  # reported by the identifier the item was named by
            raise ItemError("invalidDataEmails" if by == "email" else "invalidDataUserIds", value, "invalid data")

    def _users_update(self, body: dict[str, Any]) -> web.Response:
        try:
            self._check_user(body)
        except ItemError as exc:
            return refused(exc)
        self.project.enqueue("single", self.clock(), "users/update", lambda: self._upsert(body))
        return envelope("User update requested", "Success")

    def _upsert(self, body: dict[str, Any]) -> None:
        self.project.upsert(body, self.clock())

    def _users_bulk_update(self, body: dict[str, Any]) -> web.Response:
        users = body.get("users")
        if not isinstance(users, list):
            return envelope("users is required", "BadParams", None, 400)
        return self._bulk("users/bulkUpdate", users, self._check_user, self.project.upsert)

    def _bulk(self, name: str, items: list[Any], check: Callable[[dict[str, Any]], Any],
              apply: Callable[[dict[str, Any], float], Any]) -> web.Response:
        """Items checked one by one; a value of another type than its field's refuses the whole request."""
        failed: dict[str, list[str]] = {key: [] for key in FAILURE_KEYS}
        disallowed: list[str] = []
        accepted = []
        snapshot, self.project.created_fields = self.project.types_snapshot(), []
        for item in items:
            item = item if isinstance(item, dict) else {}
            try:
                check(item)
                accepted.append(item)
            except TypeMismatch as exc:
                self.project.restore_types(snapshot)
                return refused(exc)
            except ItemError as exc:
                if exc.kind == "disallowedEventNames":
                    disallowed.append(exc.value)
                elif exc.kind:
                    failed[exc.kind].append(exc.value)
        if accepted:
            def apply_all() -> None:
                for item in accepted:
                    apply(item, self.clock())

            self.project.enqueue("bulk", self.clock(), name, apply_all)
        return web.json_response({
            "successCount": len(accepted), "failCount": len(items) - len(accepted),
            "createdFields": sorted(set(self.project.created_fields)), "filteredOutFields": [],
            "disallowedEventNames": disallowed, "invalidEmails": failed["invalidEmails"],
            "invalidUserIds": failed["invalidUserIds"], "failedUpdates": failed})

    # -- events ---------------------------------------------------------------------------------

    def _check_event(self, body: dict[str, Any]) -> None:
        name = body.get("eventName")
        if not isinstance(name, str) or not name:
            raise ItemError("", "", "eventName is required")
        if name in self.disallowed_event_names:
            raise ItemError("disallowedEventNames", name, f"event name {name} is not allowed")
        if "createdAt" in body and not isinstance(body["createdAt"], int):
            raise ItemError("", "", "createdAt: Number value expected")
        self.project.check_event(body, self.clock())

    def _events_track(self, body: dict[str, Any]) -> web.Response:
        try:
            self._check_event(body)
        except ItemError as exc:
            return refused(exc)
        self.project.enqueue("single", self.clock(), "events/track", lambda: self.project.track(body, self.clock()))
        return envelope(f"Event with id: {body.get('id')} tracked.", "Success", {"id": body.get("id")})

    def _events_track_bulk(self, body: dict[str, Any]) -> web.Response:
        events = body.get("events")
        if not isinstance(events, list):
            return envelope("events is required", "BadParams", None, 400)
        return self._bulk("events/trackBulk", events, self._check_event, self.project.track)

    # -- commerce and email ---------------------------------------------------------------------

    def _check_commerce(self, body: dict[str, Any]) -> None:
        if not isinstance(body.get("user"), dict):
            raise ItemError("", "", "user is required")
        items = body.get("items")
        if not isinstance(items, list):
            raise ItemError("", "", "items is required")
        problem = next((p for p in map(item_problem, items) if p), None)
        if problem:
            raise ItemError("", "", problem)
        self._check_user(body["user"])

    def _track_purchase(self, body: dict[str, Any]) -> web.Response:
        try:
            self._check_commerce(body)
            if not is_number(body.get("total")):
                raise ItemError("", "", "total is required")
        except ItemError as exc:
            return refused(exc)

        def apply() -> None:
            user = self.project.upsert(body["user"], self.clock())
            self.project.purchases[str(body.get("id") or len(self.project.purchases))] = body
            self.project.carts[user["userId"] or user["email"]] = []

        self.project.enqueue("single", self.clock(), "commerce/trackPurchase", apply)
        return envelope("Purchase tracked", "Success")

    def _update_cart(self, body: dict[str, Any]) -> web.Response:
        try:
            self._check_commerce(body)
        except ItemError as exc:
            return refused(exc)

        def apply() -> None:
            user = self.project.upsert(body["user"], self.clock())
            self.project.carts[user["userId"] or user["email"]] = body["items"]

        self.project.enqueue("single", self.clock(), "commerce/updateCart", apply)
        return envelope("Cart updated", "Success")

    def _update_email(self, body: dict[str, Any]) -> web.Response:
        new = body.get("newEmail")
        if not is_email(new):
            return envelope(f"Invalid email: {new}", "InvalidEmailAddressError", None, 400)
        if self.project.project_type == "userId":
            return envelope("Use POST /api/users/update to change an email in a userID-based project",
                            "BadParams", None, 400)
        now = self.clock()
        user = self.project.find("email", body.get("currentEmail"), now) or \
            self.project.find("userId", body.get("currentUserId"), now)
        if user is None:
            return envelope("User does not exist", "BadParams", None, 400)
        if self.project.find("email", new) is not None or f"email:{new}" in self.project.forgotten:
            return envelope("Email/userId conflict", "EmailAlreadyExists", None, 409)
        self.project.enqueue("single", now, "users/updateEmail", lambda: self.project.update_email(user, str(new)))
        return envelope("Email updated", "Success")

    # -- subscriptions and tokens -----------------------------------------------------------------

    def _update_subscriptions(self, body: dict[str, Any]) -> web.Response:
        try:
            apply = self._subscriptions(body)
        except ItemError as exc:
            return refused(exc)
        self.project.enqueue("single", self.clock(), "users/updateSubscriptions", apply)
        return envelope("Subscriptions updated", "Success")

    def _subscriptions(self, body: dict[str, Any]) -> Callable[[], None]:
        """What one UpdateSubscriptionsRequest does, once its queue gets to it; ItemError if it is refused."""
        by, value = self.project.naming(body)
        self.project._forgotten(by, value)
        for name in SUBSCRIPTION_FIELDS:
            ids = body.get(name)
            if ids is not None and not (isinstance(ids, list) and all(is_number(i) for i in ids)):
                raise ItemError("", "", f"{name}: an array of numbers expected")
        changes = {k: v for k, v in body.items() if k in SUBSCRIPTION_FIELDS and v is not None}

        def apply() -> None:
            user = self.project.find(by, value) or self.project.upsert({by: value}, self.clock())
            user.setdefault("subscriptions", {}).update(changes)  # overwrites every non-null field
            self.subscription_events.append({by: value, **changes})

        return apply

    def _bulk_update_subscriptions(self, body: dict[str, Any]) -> web.Response:
        """``POST /api/users/bulkUpdateSubscriptions``: UpdateSubscriptionsRequests in the bulk queue, answered
        with BulkUpdateSubscriptionsResponse (every list required; refused identifiers under ``invalid*``)."""
        requests = body.get("updateSubscriptionsRequests")
        if not isinstance(requests, list):
            return envelope("updateSubscriptionsRequests is required", "BadParams", None, 400)
        answer: dict[str, Any] = {"successCount": 0, "failCount": 0, "invalidEmails": [], "invalidUserIds": [],
                                  "validEmailFailures": [], "validUserIdFailures": []}
        accepted = []
        for item in requests:
            try:
                accepted.append(self._subscriptions(item if isinstance(item, dict) else {}))
            except ItemError as exc:
                answer["failCount"] += 1
                named = item if isinstance(item, dict) else {}
                by_email = "Email" in exc.kind or ("userId" not in named and "Id" not in exc.kind)
                answer["invalidEmails" if by_email else "invalidUserIds"].append(
                    exc.value or str(named.get("email" if by_email else "userId", "")))
        answer["successCount"] = len(accepted)
        if accepted:
            def apply_all() -> None:
                for apply in accepted:
                    apply()

            self.project.enqueue("bulk", self.clock(), "users/bulkUpdateSubscriptions", apply_all)
        return web.json_response(answer)

    def _register_device(self, body: dict[str, Any]) -> web.Response:
        device = body.get("device")
        if not isinstance(device, dict) or not device.get("token") or not device.get("applicationName") \
                or device.get("platform") not in ("APNS", "APNS_SANDBOX", "GCM"):
            return envelope("device: token, platform (APNS, APNS_SANDBOX, GCM) and applicationName are required",
                            "BadParams", None, 400)
        return self._register(body, "devices", dict(device))

    def _register_browser(self, body: dict[str, Any]) -> web.Response:
        if not isinstance(body.get("browserToken"), str) or not body["browserToken"]:
            return envelope("browserToken is required", "BadParams", None, 400)
        return self._register(body, "browserTokens", body["browserToken"])

    def _register(self, body: dict[str, Any], field: str, token: Any) -> web.Response:
        try:
            by, value = self.project.naming(body)
            self.project._forgotten(by, value)
        except ItemError as exc:
            return refused(exc)
        user = self.project.find(by, value)
        if user is not None and len(user.get(field, [])) >= 500:
            return envelope(f"Maximum of 500 {field} per user", "BadParams", None, 400)

        def apply() -> None:
            target = self.project.find(by, value) or self.project.upsert({by: value}, self.clock())
            if token not in target.setdefault(field, []):
                target[field].append(token)
            self.registrations.append({by: value, field: token})

        self.project.enqueue("single", self.clock(), f"users/{field}", apply)
        return envelope("Token registered", "Success")

    # -- deletion and GDPR forget ------------------------------------------------------------------

    async def _delete_by_user_id(self, request: web.Request) -> web.Response:
        return self._delete("userId", request.match_info["userId"])

    async def _delete_by_email(self, request: web.Request) -> web.Response:
        if self.project.project_type == "userId":
            return envelope("Deleting by email is not supported in a userID-based project", "BadParams", None, 400)
        return self._delete("email", request.match_info["email"])

    def _delete(self, by: str, value: str) -> web.Response:
        self.process()
        user = self.project.find(by, value)
        if user is None:
            return envelope(f"User does not exist. {by}: {value}", "BadParams", None, 400)
        self.deletions.append({by: value})
        self.project.enqueue("single", self.clock(), "users/delete", lambda: self.project.remove(user))
        return envelope("User deletion requested", "Success")

    def _forget(self, body: dict[str, Any]) -> web.Response:
        if len(self.forgets) >= FORGETS_PER_DAY:
            return envelope("Daily limit of forget requests exceeded", "RateLimitExceeded", None, 429)
        try:
            by, value = self.project.naming(body)
        except ItemError as exc:
            return refused(exc)
        if self.project.project_type == "email" and by != "email":
            return envelope("Forget by email in an email-based project", "BadParams", None, 400)
        self.forgets.append({by: value})
        self.project.enqueue("single", self.clock(), "users/forget",
                             lambda: self.project.forget(**{"email" if by == "email" else "user_id": value}))
        return envelope("User forget requested", "Success")

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
        """``GetWebhooksResponse``: the fields Iterable's spec lists (no token, headers or event types)."""
        shown = ("id", "endpoint", "enabled", "authType", "blastSendEnabled", "triggeredSendEnabled",
                 "channelIds", "messageTypeIds")
        return web.json_response({"webhooks": [{k: w[k] for k in shown if k in w} for w in self.webhooks]})

    def add_webhook(self, endpoint: str, **fields: Any) -> dict[str, Any]:
        """A system webhook as Iterable's UI creates it (enabled, Basic auth, every campaign kind)."""
        webhook = {"id": 1000 + len(self.webhooks), "endpoint": endpoint, "enabled": True, "authType": "Basic",
                   "blastSendEnabled": True, "triggeredSendEnabled": True, "channelIds": [], "messageTypeIds": [],
                   **fields}
        self.webhooks.append(webhook)
        return webhook

    async def _get_fields(self, request: web.Request) -> web.Response:
        """``GetUserFieldsResponse``: every user field's dotted name and the type its first value fixed."""
        self.process()
        return web.json_response({"fields": dict(self.project.field_types)})

    async def _state(self, request: web.Request) -> web.Response:
        self.process()
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
