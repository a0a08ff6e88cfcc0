"""Segment's reading of an event before a destination sees it (SPEC section 13): the integrations object,
spec event names, property aliases and numbers. Pure.

Sources: segmentio/facade ``lib/facade.js`` (``enabled``: keys read case-insensitively through obj-case, a
boolean decides, any other value such as a settings object enables, ``All``/``all`` false disables the
destinations not named), ``lib/track.js`` (``orderId``: ``id``/``order_id``/``orderId``; ``productId``:
``product_id``/``productId``; ``revenue``: ``revenue``, else ``total`` on an order completion, a leading ``$``
stripped; ``quantity`` defaults to 1; the order completion pattern ``^[ _]?order[ _]?completed[ _]?$``, case
aside, and its v1 form "Completed Order"), and the Segment Ecommerce Events spec (v2 names, v1 names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sync.errors import InvalidEvent

DESTINATION_KEYS = ("iterable", "iterable (actions)")  # Segment's names for the classic and Actions destination

# v2 spec names and their v1 forms, compared without case, spaces or underscores
SPEC_EVENTS = {
    "ordercompleted": "Order Completed", "completedorder": "Order Completed",
    "productadded": "Product Added", "addedproduct": "Product Added",
    "productremoved": "Product Removed", "removedproduct": "Product Removed",
    "cartupdated": "Cart Updated", "updatedcart": "Cart Updated",
}

ORDER_ID = ("order_id", "orderId", "id")
ORDER_TOTAL = ("total", "revenue")
PRODUCT_ID = ("product_id", "productId", "id")
_DECIMAL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


# -- integrations -------------------------------------------------------------------------------


def opted_out(integrations: Any) -> str | None:
    """Why Segment would not send this event to Iterable (None: it would). Keys match without case; a
    named destination decides by its boolean, any other value (a settings object) enables it; otherwise
    ``All: false`` disables it. With two spellings of the key, a ``false`` wins."""
    if not isinstance(integrations, Mapping):
        return None
    named = [(k, v) for k, v in integrations.items() if str(k).lower() in DESTINATION_KEYS]
    if named:
        off = next((k for k, v in named if v is False), None)
        return f"integrations.{off} is false" if off is not None else None
    all_off = next((k for k, v in integrations.items() if str(k).lower() == "all" and v is False), None)
    return f"integrations.{all_off} is false and Iterable is not enabled" if all_off is not None else None


def destination_settings(integrations: Any) -> dict[str, Any]:
    """The settings object given for Iterable (``integrations.Iterable``, any case), or {}."""
    if not isinstance(integrations, Mapping):
        return {}
    for key, value in integrations.items():
        if str(key).lower() in DESTINATION_KEYS and isinstance(value, dict):
            return value
    return {}


# -- names and aliases -----------------------------------------------------------------------------


def spec_event(name: str) -> str | None:
    """The Segment spec event a track name means (``order_completed``, ``Completed Order``...), or None."""
    return SPEC_EVENTS.get(re.sub(r"[\s_]+", "", name).lower())


def pick(fields: Mapping[str, Any], aliases: Sequence[str]) -> tuple[str, Any] | None:
    """(alias, value) of the first alias present with a value that is not null or blank."""
    for alias in aliases:
        value = fields.get(alias)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        return alias, value
    return None


# -- numbers -----------------------------------------------------------------------------------


def read_number(value: Any, path: str, *, currency: bool = False) -> float:
    """A finite number from a JSON number or a decimal written as text (``"19.99"``; with ``currency`` a
    leading ``$`` too, as facade reads revenue). Raises ``InvalidEvent`` naming ``path`` otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        text = value.strip()
        if currency and text.startswith("$"):
            text = text[1:]
        if _DECIMAL.match(text) and math.isfinite(float(text)):
            return float(text)
    raise InvalidEvent(f"{path}: not a number ({_shown(value)}); nothing is sent rather than a guess")


def read_count(value: Any, path: str) -> int:
    """A whole number (a JSON integer, an integral float, or digits as text); raises ``InvalidEvent``."""
    number = read_number(value, path)
    if number != int(number) or abs(number) >= 2**53:
        raise InvalidEvent(f"{path}: not a whole number ({_shown(value)})")
    return int(number)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
