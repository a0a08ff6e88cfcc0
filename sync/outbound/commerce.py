"""Segment ecommerce ``products`` as Iterable commerce items (SPEC sections 5 and 13, "Items"). Pure.

Iterable requires ``id``, ``name``, ``price`` and ``quantity`` on every item (``CommerceItem``, Iterable API
spec). They are read through Segment's aliases and never invented: a product without an id, a name or a
readable price is refused naming its path; ``quantity`` defaults to 1 as Segment's facade reads it.
"""

from __future__ import annotations

from typing import Any

from sync.errors import InvalidEvent
from sync.segment.semantics import PRODUCT_ID, pick, read_count, read_number
from sync.segment.spec import iterable_dates, js_number, text_id

_ITEM_KEYS = {"product_id", "productId", "id", "sku", "name", "price", "quantity", "category", "url", "image_url",
              "description"}


def items(products: list[Any], path: str = "properties.products") -> list[dict[str, Any]]:
    return [_item(product, f"{path}[{index}]") for index, product in enumerate(products)]


def product_list(products: Any, path: str = "properties.products") -> list[Any]:
    """``products`` as a list (absent: none). Anything else is refused naming the field, never sent as no items."""
    if products is None:
        return []
    if not isinstance(products, list):
        raise InvalidEvent(f"{path}: expected an array of products, got {type(products).__name__}")
    return products


def _categories(value: Any, path: str) -> list[str]:
    """Iterable's ``categories`` from Segment's ``category``: a string, or (as some sources send) a list of
    them; a number is kept as its text. Anything else is refused naming the field, never dropped."""
    values = value if isinstance(value, list) else [value]
    found = []
    for index, entry in enumerate(values):
        if isinstance(entry, bool) or not isinstance(entry, str | int | float):
            where = f"{path}[{index}]" if isinstance(value, list) else path
            raise InvalidEvent(f"{where}: expected a category name (text)")
        if text := str(entry).strip():
            found.append(text)
    return found


def item_id(product: dict[str, Any]) -> tuple[str, str] | None:
    """(alias, id) of a product: ``product_id``, ``productId``, then ``id``."""
    found = pick(product, PRODUCT_ID)
    if found is None or text_id(found[1]) is None:
        return None
    return found[0], str(text_id(found[1]))


def _item(product: Any, path: str) -> dict[str, Any]:
    if not isinstance(product, dict):
        raise InvalidEvent(f"{path}: expected an object")
    found = item_id(product)
    if found is None:
        raise InvalidEvent(f"{path}.product_id: required (product_id, productId or id)")
    name = product.get("name")
    if not (isinstance(name, str) and name.strip()):
        raise InvalidEvent(f"{path}.name: required (Iterable needs a name for every item)")
    if product.get("price") is None:
        raise InvalidEvent(f"{path}.price: required (Iterable needs a price for every item)")
    quantity = product.get("quantity")
    item: dict[str, Any] = {
        "id": found[1],
        "name": name,
        "price": read_number(product["price"], f"{path}.price"),
        "quantity": 1 if quantity is None else read_count(quantity, f"{path}.quantity"),
    }
    kept_out: set[str] = set()  # Segment fields Iterable has no place for in this shape: kept as dataFields
    for source, target in (("sku", "sku"), ("url", "url"), ("image_url", "imageUrl"), ("description", "description")):
        value = product.get(source)
        if isinstance(value, str):
            item[target] = value
        elif source == "sku" and isinstance(value, int | float) and not isinstance(value, bool):
            item[target] = js_number(value)  # a numeric sku is common: Iterable's sku is a string
        elif value is not None:
            kept_out.add(source)
    if product.get("category") is not None and (categories := _categories(product["category"], f"{path}.category")):
        item["categories"] = categories
    if found[0] != "id" and product.get("id") is not None:  # an id beside product_id (a variant's, say)
        kept_out.add("id")
    extra = {k: v for k, v in product.items() if k not in _ITEM_KEYS or k in kept_out}
    if extra:
        item["dataFields"] = iterable_dates(extra, f"{path}")
    return item

