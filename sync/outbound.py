"""Outbound mapping: a Segment event becomes one Iterable call, a skip, or a rejection (SPEC section 5).

Pure and deterministic: ingress maps to decide the row's status, delivery maps the stored
payload again to build the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sync import people
from sync.errors import InvalidEvent
from sync.segment_events import as_dict, event_time, is_email, iterable_dates, text_id

USERS_UPDATE = "users/update"
EVENTS_TRACK = "events/track"
TRACK_PURCHASE = "commerce/trackPurchase"
UPDATE_CART = "commerce/updateCart"
UPDATE_EMAIL = "users/updateEmail"

BULK_FORM = {USERS_UPDATE: ("users/bulkUpdate", "users"), EVENTS_TRACK: ("events/trackBulk", "events")}
CART_EVENTS = ("Product Added", "Product Removed", "Cart Updated")
_ITEM_KEYS = {"product_id", "id", "sku", "name", "price", "quantity", "category", "url", "image_url", "description"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    project_type: str = "hybrid"
    merge_nested_objects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IterableCall:
    """One Iterable API call: ``endpoint`` is the single-call path under ``/api/``."""

    endpoint: str
    body: dict[str, Any]
    user_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    reason: str


def map_event(event: dict[str, Any], options: Options) -> IterableCall | Skip:
    """Map a validated Segment event. Raises ``InvalidEvent`` for one Iterable could never take."""
    skip = _opted_out(event)
    if skip:
        return Skip(reason=skip)
    kind = event["type"]
    if kind == "group":
        return Skip(reason="group is not supported by Iterable")
    if kind == "delete":
        return Skip(reason="user deletion is not forwarded to Iterable (delete the user there)")
    if kind == "alias":
        return _alias(event, options)
    ids = _identifiers(event, options)
    if isinstance(ids, Skip):
        return ids
    if kind == "identify":
        return _identify(event, ids, options)
    return _track_like(event, ids, options)


def user_key(event: dict[str, Any]) -> str | None:
    """The key that orders a user's events: Segment userId, else the email."""
    ids = _raw_ids(event)
    return ids.get("userId") or ids.get("email")


def identities(event: dict[str, Any]) -> tuple[str, ...]:
    """The ``sync.people`` identifiers an event names; an alias names both of its ids."""
    if event.get("type") == "alias":
        return people.of(people.identifier(event.get("userId")), people.identifier(event.get("previousId")))
    ids = _raw_ids(event)
    return people.of(people.identifier(ids.get("userId")), people.email_identifier(ids.get("email")))


def _opted_out(event: dict[str, Any]) -> str | None:
    integrations = as_dict(event.get("integrations"))
    choice = integrations.get("Iterable")
    if choice is False:
        return "integrations.Iterable is false"
    if integrations.get("All") is False and not choice:
        return "integrations.All is false and Iterable is not enabled"
    if str(as_dict(as_dict(event.get("context")).get("integration")).get("name", "")).lower() == "iterable":
        return "came from Iterable (loop guard)"
    return None


def _raw_ids(event: dict[str, Any]) -> dict[str, Any]:
    user_id = text_id(event.get("userId"))
    if event.get("type") == "identify":
        email = as_dict(event.get("traits")).get("email")
    else:
        email = as_dict(event.get("properties")).get("email")
        if not is_email(email):
            email = as_dict(as_dict(event.get("context")).get("traits")).get("email")
    if not is_email(email) and is_email(user_id):
        email = user_id
    ids = {"email": email} if is_email(email) else {}
    return {**ids, "userId": user_id} if user_id else ids


def _identifiers(event: dict[str, Any], options: Options) -> dict[str, Any] | Skip:
    ids: dict[str, Any] = _raw_ids(event)
    if not ids:
        return Skip(reason="no email or userId")
    if options.project_type == "userId" and "userId" not in ids:
        return Skip(reason="no userId (userId-based Iterable project)")
    if options.project_type == "email" and "email" not in ids:
        return Skip(reason="no email (email-based Iterable project)")
    return ids


def _merge_nested(event: dict[str, Any], options: Options) -> bool:
    choice = as_dict(as_dict(event.get("integrations")).get("Iterable")).get("mergeNestedObjects")
    return choice if isinstance(choice, bool) else options.merge_nested_objects


def _user_fields(fields: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in fields.items() if k not in ("email", "id", "userId")}
    if "phone" in data:  # a null clears Iterable's phoneNumber, as Segment's destination does
        data["phoneNumber"] = data.pop("phone")
    converted: dict[str, Any] = iterable_dates(data)
    return converted


def naming(ids: dict[str, Any], options: Options) -> dict[str, Any]:
    """How a request names the person: Iterable takes "an email or a userId (but not both)". Email
    projects name by email; userId and hybrid projects by userId when there is one, else by email."""
    if options.project_type == "email" or "userId" not in ids:
        return {"email": ids["email"]}
    return {"userId": ids["userId"]}


def _user(ids: dict[str, Any], fields: dict[str, Any], event: dict[str, Any], options: Options) -> dict[str, Any]:
    user = {**naming(ids, options), "dataFields": _user_fields(fields),
            "mergeNestedObjects": _merge_nested(event, options)}
    if "userId" in user:
        user["preferUserId"] = True
    elif "userId" in ids:  # email projects: the userId is a field of the profile the email names
        user["userId"] = ids["userId"]
    return user


def _identify(event: dict[str, Any], ids: dict[str, Any], options: Options) -> IterableCall:
    body = _user(ids, as_dict(event.get("traits")), event, options)
    if "userId" in body and body.get("preferUserId") and "email" in ids:
        # userId and hybrid projects change (or set) a user's email through dataFields.email
        body["dataFields"] = {**body["dataFields"], "email": ids["email"]}
    return IterableCall(endpoint=USERS_UPDATE, body=body, user_key=user_key(event))


def _track_like(event: dict[str, Any], ids: dict[str, Any], options: Options) -> IterableCall:
    properties = as_dict(event.get("properties"))
    name = _event_name(event)
    products = properties.get("products")
    if name == "Order Completed":
        return _purchase(event, ids, options)
    if name in CART_EVENTS and isinstance(products, list):
        user = _user(ids, as_dict(as_dict(event.get("context")).get("traits")), event, options)
        body = {"user": user, "items": _items(products)}
        return IterableCall(endpoint=UPDATE_CART, body=body, user_key=user_key(event))
    body = {**naming(ids, options), "eventName": name, "id": event["messageId"],
            "dataFields": iterable_dates(_fields(event))}
    return IterableCall(endpoint=EVENTS_TRACK, body={**body, **_created_at(event), **_campaign(properties)},
                        user_key=user_key(event))


def _event_name(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == "track":
        return str(event["event"]).strip()
    name = event.get("name") or as_dict(event.get("properties")).get("name")
    label = "Page" if kind == "page" else "Screen"
    return f"{name} {kind}" if isinstance(name, str) and name.strip() else f"Loaded a {label}"


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    properties = as_dict(event.get("properties"))
    if event["type"] != "page":
        return properties
    page = as_dict(as_dict(event.get("context")).get("page"))
    extra = {k: event[k] for k in ("name", "category") if isinstance(event.get(k), str)}
    return {**page, **extra, **properties}


def _created_at(event: dict[str, Any]) -> dict[str, int]:
    when = event_time(event)
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


def _purchase(event: dict[str, Any], ids: dict[str, Any], options: Options) -> IterableCall:
    properties = as_dict(event.get("properties"))
    total = properties.get("total")
    if isinstance(total, str):
        total = _float(total)
    if isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total):
        raise InvalidEvent("properties.total: required for Order Completed (a number)")
    order_id = text_id(properties.get("order_id")) or event["messageId"]  # still idempotent without one
    products = properties.get("products")
    rest = {k: v for k, v in properties.items() if k not in ("products", "total", "campaignId", "templateId")}
    user = _user(ids, as_dict(as_dict(event.get("context")).get("traits")), event, options)
    body = {"id": order_id, "user": user, "items": _items(products if isinstance(products, list) else []),
            "total": float(total), "dataFields": iterable_dates(rest)}
    body.update(_created_at(event))
    body.update(_campaign(properties))
    return IterableCall(endpoint=TRACK_PURCHASE, body=body, user_key=user_key(event))


def _items(products: list[Any]) -> list[dict[str, Any]]:
    return [_item(product, index) for index, product in enumerate(products)]


def _item(product: Any, index: int) -> dict[str, Any]:
    if not isinstance(product, dict):
        raise InvalidEvent(f"properties.products[{index}]: expected an object")
    item_id = text_id(product.get("product_id")) or text_id(product.get("id")) or text_id(product.get("sku"))
    if item_id is None:
        raise InvalidEvent(f"properties.products[{index}].product_id: required")
    name = product.get("name")
    item: dict[str, Any] = {
        "id": item_id,
        "name": name if isinstance(name, str) and name else item_id,
        "price": _float(product.get("price")) or 0.0,
        "quantity": _int(product.get("quantity"), 1),
    }
    for source, target in (("sku", "sku"), ("url", "url"), ("image_url", "imageUrl"), ("description", "description")):
        if isinstance(product.get(source), str):
            item[target] = product[source]
    if isinstance(product.get("category"), str):
        item["categories"] = [product["category"]]
    extra = {k: v for k, v in product.items() if k not in _ITEM_KEYS}
    if extra:
        item["dataFields"] = iterable_dates(extra)
    return item


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any, default: int) -> int:
    number = _float(value)
    return int(number) if number is not None and abs(number) < 2**53 else default


def _alias(event: dict[str, Any], options: Options) -> IterableCall | Skip:
    if options.project_type == "userId":
        return Skip(reason="alias is not sent in a userId-based project: send identify with the new email")
    previous, new = text_id(event.get("previousId")), text_id(event.get("userId"))
    if not (is_email(previous) and is_email(new)):
        return Skip(reason="alias needs previousId and userId that are both email addresses")
    body = {"currentEmail": previous, "newEmail": new}
    return IterableCall(endpoint=UPDATE_EMAIL, body=body, user_key=previous)
