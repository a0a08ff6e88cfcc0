"""Segment ecommerce ``products`` as Iterable commerce items (SPEC section 5, "Items"). Pure."""

from __future__ import annotations

import math
from typing import Any

from sync.errors import InvalidEvent
from sync.segment_events import iterable_dates, text_id

_ITEM_KEYS = {"product_id", "id", "sku", "name", "price", "quantity", "category", "url", "image_url", "description"}


def items(products: list[Any]) -> list[dict[str, Any]]:
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
        "price": number(product.get("price")) or 0.0,
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


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None otherwise (booleans included)."""
    if isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _int(value: Any, default: int) -> int:
    found = number(value)
    return int(found) if found is not None and abs(found) < 2**53 else default


