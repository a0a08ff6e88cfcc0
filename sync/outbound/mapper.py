"""Outbound mapping: a Segment event becomes one Iterable call, a skip, or a rejection (SPEC sections 5
and 10).

Pure and deterministic, a function of (event, options). The order of evaluation is that of
configurable_mapping.md B3: fixed opt-outs, the type filter, ``drop_if``, name filters, routing,
identifiers, fields (allow, deny, rename, then the fixed conversions), names. Intake maps once and the
ledger keeps the call it decided; delivery sends it as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from sync import people
from sync.errors import InvalidEvent
from sync.iterable.identifiers import email_problem
from sync.mapping.rules import (
    EventRule,
    Identity,
    OutboundMapping,
    PageRules,
    dropped_by,
    effective,
    matches,
    shape,
    template,
)
from sync.outbound import consent
from sync.outbound.anonymous import RELEASED_IDENTITY
from sync.outbound.commerce import items, product_list
from sync.segment import semantics as semantic
from sync.segment.spec import as_dict, event_time, is_email, iterable_dates, js_number, text_id

USERS_UPDATE = "users/update"
EVENTS_TRACK = "events/track"
TRACK_PURCHASE = "commerce/trackPurchase"
UPDATE_CART = "commerce/updateCart"
UPDATE_EMAIL = "users/updateEmail"
UPDATE_SUBSCRIPTIONS = "users/updateSubscriptions"

# a call Iterable also takes in its bulk queue: the bulk endpoint and the list its items go in (a person's
# calls stay in one of the two queues, SPEC section 4, so each form is used where the person's calls already are)
BULK_FORM = {USERS_UPDATE: ("users/bulkUpdate", "users"), EVENTS_TRACK: ("events/trackBulk", "events"),
             UPDATE_SUBSCRIPTIONS: ("users/bulkUpdateSubscriptions", "updateSubscriptionsRequests")}
BUILT_IN_CALLS = {"Order Completed": "purchase", "Product Added": "cart", "Product Removed": "cart",
                  "Cart Updated": "cart"}
NO_EVENT_RULE = EventRule()
SPEC_IDENTITY = Identity()


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    project_type: str = "hybrid"
    merge_nested_objects: bool = False
    mapping: OutboundMapping = field(default_factory=OutboundMapping)
    deletion: str = "delete"
    subscriptions: str = "update_subscriptions"
    push_apps: dict[str, str] = field(default_factory=dict)  # platform (APNS, GCM) -> push integration name
    consent_categories: tuple[str, ...] = ()  # [consent] outbound_categories: all must be granted (SPEC 14)
    keep_consent: bool = False  # remember each person's consent for their inbound events (inbound_categories set)


@dataclass(frozen=True, slots=True, kw_only=True)
class IterableCall:
    """One Iterable API call: ``endpoint`` is the path under ``/api/``; ``limit`` the rate-limit bucket
    when it is not the endpoint itself (a deletion's path holds the user's id)."""

    endpoint: str
    body: dict[str, Any]
    user_key: str | None
    method: str = "POST"
    limit: str | None = None

    def frozen(self) -> dict[str, Any]:
        """The call as the ledger stores it (``thawed`` reads it back)."""
        stored: dict[str, Any] = {"endpoint": self.endpoint, "body": self.body}
        if self.method != "POST":
            stored.update(method=self.method, limit=self.limit)
        return stored

    @staticmethod
    def thawed(stored: dict[str, Any], user_key: str | None) -> IterableCall:
        return IterableCall(endpoint=stored["endpoint"], body=stored["body"], user_key=user_key,
                            method=stored.get("method", "POST"), limit=stored.get("limit"))


def path_segment(text: str, safe: str = "") -> str:
    """``text`` as one percent-encoded URL path segment. A userId of ``.`` or ``..`` would be a dot-segment,
    which URL normalisation removes (``users/byUserId/..`` became ``users/``: a 404 taken for a deletion done):
    its dots are encoded too (RFC 3986 section 3.3)."""
    segment = quote(text, safe=safe)
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    """Not sent, on purpose: ``reason`` in full; ``key`` names the rule or config key (a metric label)."""

    reason: str
    key: str = "spec"


@dataclass(frozen=True, slots=True, kw_only=True)
class Named:
    """Who an event names, read once per event: its email and userId as ``[outbound.identity]`` finds them
    (``raw_ids``), the key that orders them (``user_key``) and its ``sync.people`` identifiers."""

    ids: dict[str, Any]
    user_key: str | None
    identities: tuple[str, ...]


def named(event: dict[str, Any], identity: Identity = SPEC_IDENTITY) -> Named:
    """Who a validated event names (``Named``)."""
    ids = raw_ids(event, identity)
    return Named(ids=ids, user_key=ids.get("userId") or ids.get("email"), identities=_identities(event, ids))


def map_event(event: dict[str, Any], options: Options, who: Named | None = None) -> IterableCall | Skip:
    """Map a validated Segment event; ``who`` is ``named(event, options.mapping.identity)`` when the caller
    has it already. Raises ``InvalidEvent`` for one Iterable could never take."""
    skip = _opted_out(event) or _filtered(event, options.mapping) or _unconsented(event, options)
    if skip:
        return skip
    kind = event["type"]
    if kind == "alias":
        return _alias(event, options)
    who = who or named(event, options.mapping.identity)
    if kind == "delete":
        return _deletion(who, options)
    check_email(event, options.mapping.identity)
    skipped = _unnamed(who.ids, options)
    if skipped:
        return skipped
    if kind == "identify":
        return _identify(event, who, options)
    return _track_like(event, who, options)


def user_key(event: dict[str, Any], identity: Identity = SPEC_IDENTITY) -> str | None:
    """The key that orders a user's events before the ledger links them: userId, else the email."""
    ids = raw_ids(event, identity)
    return ids.get("userId") or ids.get("email")


def identities(event: dict[str, Any], identity: Identity = SPEC_IDENTITY) -> tuple[str, ...]:
    """The ``sync.people`` identifiers an event names; an alias names both of its ids."""
    return _identities(event, raw_ids(event, identity))


def _identities(event: dict[str, Any], ids: dict[str, Any]) -> tuple[str, ...]:
    if event.get("type") == "alias":
        return people.of(people.identifier(event.get("userId")), people.identifier(event.get("previousId")))
    return _person(ids.get("userId"), ids.get("email"))


@lru_cache(maxsize=8192)  # one person sends many events; normalising their identifiers is most of this
def _person(user_id: str | None, email: str | None) -> tuple[str, ...]:
    return people.of(people.identifier(user_id), people.email_identifier(email))


# -- 1 to 4: what is sent at all ---------------------------------------------------------------


def _opted_out(event: dict[str, Any]) -> Skip | None:
    opted_out = semantic.opted_out(event.get("integrations"))
    if opted_out:
        return Skip(reason=opted_out, key="integrations")
    if str(as_dict(as_dict(event.get("context")).get("integration")).get("name", "")).lower() == "iterable":
        return Skip(reason="came from Iterable (loop guard)", key="loop guard")
    if event["type"] == "group":
        return Skip(reason="group is not supported by Iterable", key="group")
    return None


def _unconsented(event: dict[str, Any], options: Options) -> Skip | None:
    """Skip an event whose end-user consent denies a required category (a deletion request is always sent)."""
    if event["type"] == "delete" or not options.consent_categories:
        return None
    category = consent.denied(consent.preferences(event), options.consent_categories)
    return Skip(reason=consent.reason(category), key="consent.outbound_categories") if category else None


def _filtered(event: dict[str, Any], mapping: OutboundMapping) -> Skip | None:
    kind, rules = event["type"], mapping.filter
    if kind == "delete":  # a deletion request is never filtered out (SPEC section 11)
        return None
    if kind not in rules.types:
        return Skip(reason=f"type {kind} not in outbound.filter.types", key="outbound.filter.types")
    index = dropped_by(rules.drop_if, event)
    if index is not None:
        return Skip(reason=f"dropped by outbound.filter.drop_if[{index}] ({rules.drop_if[index].path})",
                    key="outbound.filter.drop_if")
    if kind == "track":
        name = str(event["event"]).strip()
        if rules.allow and not matches(rules.allow, name):
            return Skip(reason=f"event {name!r} is not in outbound.filter.allow", key="outbound.filter.allow")
        denied = matches(rules.deny, name)
        if denied:
            return Skip(reason=f"event {name!r} matches outbound.filter.deny {denied!r}", key="outbound.filter.deny")
    if kind in ("page", "screen"):
        return _page_sent(event, mapping.pages if kind == "page" else mapping.screens, kind)
    return None


def _page_sent(event: dict[str, Any], rules: PageRules, kind: str) -> Skip | None:
    values = _page_values(event)
    named, categorized = bool(values["name"]), bool(values["category"])
    wanted = {"all": True, "none": False, "named": named, "categorized": categorized,
              "named_or_categorized": named or categorized}[rules.send]
    key = f"outbound.{kind}s.send"
    return None if wanted else Skip(reason=f"{kind} not sent: {key} is {rules.send!r}", key=key)


def _page_values(event: dict[str, Any]) -> dict[str, str]:
    properties = as_dict(event.get("properties"))
    values = {}
    for name in ("name", "category"):
        value = _named(event.get(name))
        values[name] = value if value is not None else _named(properties.get(name)) or ""
    return values


def _named(value: Any) -> str | None:
    """A page's name or category as text: a number as JavaScript writes it (Segment's facade reads the field
    as given: ``{"name": 42}`` is the page "42"); empty, or neither text nor a number: None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return js_number(value)
    return None


# -- 6: who -------------------------------------------------------------------------------------


Path = tuple[str, tuple[str, ...]]  # a dotted path, and its parts


@dataclass(frozen=True, slots=True, kw_only=True)
class _IdentityPaths:
    """``[outbound.identity]`` read once: its paths split, the email paths chosen per call type."""

    user_id: tuple[Path, ...]
    email_identify: tuple[Path, ...]
    email_other: tuple[Path, ...]
    email_from_user_id: bool


@lru_cache(maxsize=64)
def _identity_paths(identity: Identity) -> _IdentityPaths:
    def split(paths: tuple[str, ...]) -> tuple[Path, ...]:
        return tuple((p, tuple(p.split("."))) for p in paths)

    return _IdentityPaths(user_id=split(identity.user_id_paths),
                          email_identify=split(_email_paths("identify", identity)),
                          email_other=split(_email_paths("other", identity)),
                          email_from_user_id=identity.email_from_user_id)


def _at(event: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at a split dotted path, or None (``lookup``'s value)."""
    value: Any = event
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def raw_ids(event: dict[str, Any], identity: Identity) -> dict[str, Any]:
    """The event's email and userId, as ``[outbound.identity]`` says where to find them; a released
    anonymous event's identity (``anonymous.RELEASED_IDENTITY``) gives each one its paths do not find."""
    paths = _identity_paths(identity)
    user_id = None
    for _, parts in paths.user_id:
        user_id = text_id(_at(event, parts))
        if user_id:
            break
    email = None
    for _, parts in paths.email_identify if event.get("type") == "identify" else paths.email_other:
        found = _at(event, parts)
        if isinstance(found, str) and is_email(found.strip()):
            email = found.strip()
            break
    released = event.get(RELEASED_IDENTITY)
    if isinstance(released, dict):
        user_id = user_id or text_id(released.get("userId"))
        given = released.get("email")
        email = email or (given.strip() if isinstance(given, str) and is_email(given.strip()) else None)
    if email is None and paths.email_from_user_id and is_email(user_id):
        email = user_id
    ids = {"email": email} if email else {}
    return {**ids, "userId": user_id} if user_id else ids


def _email_paths(kind: str, identity: Identity) -> tuple[str, ...]:
    """Paths absent for a call type are skipped: traits are an identify's, properties the others'. With the
    default paths an identify reads only its traits (SPEC section 5)."""
    if kind == "identify":
        paths = tuple(p for p in identity.email_paths if not p.startswith("properties."))
        return tuple(p for p in paths if p.startswith("traits.")) if identity == SPEC_IDENTITY else paths
    return tuple(p for p in identity.email_paths if not p.startswith("traits."))


def email_reading(event: dict[str, Any], identity: Identity) -> tuple[str, Any] | None:
    """(path, value) of the first email path that holds something (not null, not blank)."""
    paths = _identity_paths(identity)
    for path, parts in paths.email_identify if event.get("type") == "identify" else paths.email_other:
        found = _at(event, parts)
        if found is not None and not (isinstance(found, str) and not found.strip()):
            return path, found
    return None


def check_email(event: dict[str, Any], identity: Identity) -> None:
    """An email the event gives that Iterable would refuse is refused here, naming its path: it is never
    left out silently (SPEC section 13)."""
    reading = email_reading(event, identity)
    problem = email_problem(reading[1]) if reading else None
    if reading and problem:
        raise InvalidEvent(f"{reading[0]}: {problem}")


def _unnamed(ids: dict[str, Any], options: Options) -> Skip | None:
    """Why an event that names no one Iterable can take is skipped (None: it names someone)."""
    if not ids:
        return Skip(reason="no email or userId", key="no identifier")
    if options.project_type == "userId" and "userId" not in ids:
        return Skip(reason="no userId (userId-based Iterable project)", key="no identifier")
    if options.project_type == "email" and "email" not in ids:
        return Skip(reason="no email (email-based Iterable project)", key="no identifier")
    return None


def naming(ids: dict[str, Any], options: Options) -> dict[str, Any]:
    """How a request names the person: Iterable takes "an email or a userId (but not both)". Email
    projects name by email; userId and hybrid projects by userId when there is one, else by email."""
    if options.project_type == "email" or "userId" not in ids:
        return {"email": ids["email"]}
    return {"userId": ids["userId"]}


# -- 5, 7, 8: routes, fields, names ------------------------------------------------------------


def _merge_nested(event: dict[str, Any], options: Options, rule: EventRule = NO_EVENT_RULE) -> bool:
    choice = semantic.destination_settings(event.get("integrations")).get("mergeNestedObjects")
    if isinstance(choice, bool):
        return choice
    return rule.merge_nested_objects if rule.merge_nested_objects is not None else options.merge_nested_objects


def _user_fields(fields: dict[str, Any], event: dict[str, Any], options: Options) -> dict[str, Any]:
    rules = options.mapping.traits
    data = shape({k: v for k, v in fields.items() if k not in ("email", "id", "userId")}, rules)
    context = as_dict(event.get("context"))
    data.update({key: context[key] for key in rules.context_fields if key in context})
    if rules.drop_nulls:
        data = {k: v for k, v in data.items() if v is not None}
    if "phone" in data:  # a null clears Iterable's phoneNumber, as Segment's destination does
        data["phoneNumber"] = data.pop("phone")
    converted: dict[str, Any] = iterable_dates(data, "traits" if event["type"] == "identify" else "context.traits")
    return converted


def _user(ids: dict[str, Any], fields: dict[str, Any], event: dict[str, Any], options: Options,
          rule: EventRule = NO_EVENT_RULE) -> dict[str, Any]:
    user = {**naming(ids, options), "dataFields": _user_fields(fields, event, options),
            "mergeNestedObjects": _merge_nested(event, options, rule)}
    if "userId" in user:
        user["preferUserId"] = True
    elif "userId" in ids:  # email projects: the userId is a field of the profile the email names
        user["userId"] = ids["userId"]
    return user


MAX_PURCHASE_ID_BYTES = 512  # TrackPurchaseRequest.id: "cannot be longer than 512 bytes"
SUBSCRIPTION_FIELDS = ("emailListIds", "unsubscribedChannelIds", "unsubscribedMessageTypeIds",
                       "subscribedMessageTypeIds")


def subscription_lists(traits: dict[str, Any]) -> dict[str, list[int]]:
    """The subscription traits present (not null), each a list of Iterable ids (``array of int64`` in
    ``users/updateSubscriptions``). Raises ``InvalidEvent`` naming ``traits.<field>`` (or its item) when one is
    not a list of integers: it was dropped (a number or a text) or sent and dead-lettered with a misleading
    reason (a text or a float in the list)."""
    found: dict[str, list[int]] = {}
    for name in SUBSCRIPTION_FIELDS:
        value = traits.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise InvalidEvent(f"traits.{name}: expected a list of Iterable ids (integers)")
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or not -(2**63) <= item < 2**63:
                raise InvalidEvent(f"traits.{name}[{index}]: expected an Iterable id (an integer)")
        found[name] = value
    return found


def _without_subscriptions(traits: dict[str, Any], options: Options) -> dict[str, Any]:
    """Traits without the subscription fields when they go through ``users/updateSubscriptions``
    (``[outbound] subscriptions = "update_subscriptions"``): written as profile fields they would change
    subscriptions without Iterable's subscribe and unsubscribe events."""
    if options.subscriptions != "update_subscriptions":
        return traits
    return {k: v for k, v in traits.items() if k not in SUBSCRIPTION_FIELDS}


def _identify(event: dict[str, Any], who: Named, options: Options) -> IterableCall:
    ids = who.ids
    traits = as_dict(event.get("traits"))
    if options.subscriptions == "update_subscriptions":  # they go through users/updateSubscriptions instead
        subscription_lists(traits)  # refused here, naming the field, when Iterable could not take them
    body = _user(ids, _without_subscriptions(traits, options), event, options)
    if "userId" in body and body.get("preferUserId") and "email" in ids:
        # userId and hybrid projects change (or set) a user's email through dataFields.email
        body["dataFields"] = {**body["dataFields"], "email": ids["email"]}
    return IterableCall(endpoint=USERS_UPDATE, body=body, user_key=who.user_key)


def event_rule(name: str, mapping: OutboundMapping) -> EventRule:
    """The ``[outbound.events]`` rule for a track named ``name``: the rule of that exact name, else the rule
    named by the spec event it is a variant of (a rule for "Order Completed" holds for "order_completed" and
    "Completed Order" too, as the built-in purchase does: SPEC section 13), else none."""
    found = mapping.events.get(name)
    if found is None and (spec := semantic.spec_event(name)) is not None:
        found = mapping.events.get(spec)
    return NO_EVENT_RULE if found is None else found


def shaped_properties(event: dict[str, Any], mapping: OutboundMapping) -> dict[str, Any]:
    """A track's, page's or screen's properties as the mapping reads them: through the event's effective field
    rules (its per-event rule's renames included: a purchase's ``order_id`` may be a renamed ``checkout_id``)."""
    kind = event.get("type")
    name = str(event.get("event", "")).strip() if kind == "track" else _page_name(event, str(kind), mapping)
    rule = event_rule(name, mapping) if kind == "track" else NO_EVENT_RULE
    return shape(_fields(event), effective(mapping.properties, rule.properties))


def _track_like(event: dict[str, Any], who: Named, options: Options) -> IterableCall:
    mapping, ids, key = options.mapping, who.ids, who.user_key
    kind = event["type"]
    name = str(event["event"]).strip() if kind == "track" else _page_name(event, kind, mapping)
    rule = event_rule(name, mapping) if kind == "track" else NO_EVENT_RULE
    fields = shaped_properties(event, mapping)
    call = rule.call or (_built_in_call(name) if kind == "track" else "track")
    if call == "purchase":
        return _purchase(event, who, options, rule, fields, name)
    products = product_list(fields["products"]) if call == "cart" and fields.get("products") is not None else None
    if products is not None:  # a cart event with products (without: a plain event)
        user = _user(ids, _without_subscriptions(as_dict(as_dict(event.get("context")).get("traits")), options),
                     event, options, rule)
        return IterableCall(endpoint=UPDATE_CART, body={"user": user, "items": items(products)}, user_key=key)
    body = {**naming(ids, options), "eventName": rule.name or name, "id": event["messageId"],
            "dataFields": iterable_dates(fields, "properties")}
    return IterableCall(endpoint=EVENTS_TRACK, body={**body, **_created_at(event), **_campaign(fields)},
                        user_key=key)


@lru_cache(maxsize=4096)
def _built_in_call(name: str) -> str:
    """The call a track name means without a rule: purchase, cart or track (the spec's names and aliases)."""
    return BUILT_IN_CALLS.get(semantic.spec_event(name) or name, "track")


def _page_name(event: dict[str, Any], kind: str, mapping: OutboundMapping) -> str:
    rules = mapping.pages if kind == "page" else mapping.screens
    return template(rules.event_name, _page_values(event)) or rules.unnamed_event_name


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    properties = as_dict(event.get("properties"))
    if event["type"] != "page":
        return dict(properties)
    page = as_dict(as_dict(event.get("context")).get("page"))
    extra = {k: event[k] for k in ("name", "category")
             if isinstance(event.get(k), str | int | float) and not isinstance(event[k], bool)}
    return {**page, **extra, **properties}


def _created_at(event: dict[str, Any]) -> dict[str, int]:
    when = event_time(event)  # corrected for the device clock with sentAt, as Segment does
    return {"createdAt": int(when.timestamp())} if when else {}


def _campaign(properties: dict[str, Any]) -> dict[str, int]:
    found = {}
    for name in ("campaignId", "templateId"):
        value = properties.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            found[name] = value
    return found


def _purchase(event: dict[str, Any], who: Named, options: Options, rule: EventRule,
              properties: dict[str, Any], name: str) -> IterableCall:
    total_reading = semantic.pick(properties, semantic.ORDER_TOTAL)
    if total_reading is None:
        raise InvalidEvent(f"properties.total: required for {name} (total or revenue, a number; it is a purchase)")
    total = semantic.read_number(total_reading[1], f"properties.{total_reading[0]}", currency=True)
    order = semantic.pick(properties, semantic.ORDER_ID)
    order_id = text_id(order[1]) if order else None
    if order and order_id and len(order_id.encode(errors="surrogatepass")) > MAX_PURCHASE_ID_BYTES:
        raise InvalidEvent(f"properties.{order[0]}: longer than the {MAX_PURCHASE_ID_BYTES} bytes Iterable takes for "
                           "a purchase id")
    order_id = order_id or event["messageId"]  # still idempotent without one
    products = properties.get("products")
    rest = {k: v for k, v in properties.items() if k not in ("products", "total", "campaignId", "templateId")}
    user = _user(who.ids, _without_subscriptions(as_dict(as_dict(event.get("context")).get("traits")), options),
                 event, options, rule)
    body = {"id": order_id, "user": user, "items": items(product_list(products)),
            "total": total, "dataFields": iterable_dates(rest, "properties")}
    body.update(_created_at(event))
    body.update(_campaign(properties))
    return IterableCall(endpoint=TRACK_PURCHASE, body=body, user_key=who.user_key)


def _alias(event: dict[str, Any], options: Options) -> IterableCall | Skip:
    if options.project_type == "userId":
        return Skip(reason="alias is not sent in a userId-based project: send identify with the new email",
                    key="alias")
    previous, new = text_id(event.get("previousId")), text_id(event.get("userId"))
    if not (is_email(previous) and is_email(new)):
        return Skip(reason="alias needs previousId and userId that are both email addresses", key="alias")
    body = {"currentEmail": previous, "newEmail": new}
    return IterableCall(endpoint=UPDATE_EMAIL, body=body, user_key=previous)


def _deletion(who: Named, options: Options) -> IterableCall | Skip:
    """A deletion request (SPEC section 11): Iterable's delete by userId or email, or GDPR forget."""
    if options.deletion == "skip":
        return Skip(reason='user deletion is not forwarded to Iterable (outbound.deletion = "skip")',
                    key="outbound.deletion")
    ids, key = who.ids, who.user_key
    if options.deletion == "forget":
        if options.project_type == "email" and "email" not in ids or not ids:
            return Skip(reason="forget needs the email in an email-based project (and an identifier in any)",
                        key="no identifier")
        return IterableCall(endpoint="users/forget", body=naming(ids, options), user_key=key, limit="users/forget")
    if "userId" in ids:  # every project type deletes by userId
        return IterableCall(endpoint=f"users/byUserId/{path_segment(ids['userId'])}", body={}, user_key=key,
                            method="DELETE", limit="users/delete")
    if "email" in ids and options.project_type != "userId":
        return IterableCall(endpoint=f"users/{path_segment(ids['email'], safe='@')}", body={}, user_key=key,
                            method="DELETE", limit="users/delete")
    return Skip(reason="no email or userId to delete", key="no identifier")
