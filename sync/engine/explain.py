"""What the daemon would do with one event under the config in force: the Iterable call or Segment track
it would send, or the reason (and the rule or key) it would skip or reject it. Used by
``check-config --try`` and by ``ledger retry --remap``. Pure."""

from __future__ import annotations

import json
from typing import Any

from sync.config import Config
from sync.engine.intake import inbound_row, outbound_options, outbound_row, outbound_rows
from sync.errors import InvalidEvent
from sync.inbound import mapper as inbound
from sync.mapping.rules import OutboundMapping
from sync.model import Direction, NewEvent, Status
from sync.outbound import consent
from sync.outbound import mapper as outbound
from sync.outbound.commerce import item_id
from sync.outbound.mapper import BULK_FORM, TRACK_PURCHASE, UPDATE_CART
from sync.segment import semantics as semantic
from sync.segment import timestamps
from sync.segment.spec import as_dict, validate


def decide(config: Config, payload: Any, direction: str, digest: str | None, now: Any, *,
           arriving: bool = False) -> NewEvent:
    """The row intake would record for ``payload`` (a Segment event, or an Iterable webhook inbound).
    ``arriving``: the event arrives now (``check-config --try``), so it gets a ``receivedAt`` if it has none; a
    stored row (``--remap``) keeps the times it was recorded with."""
    if direction == "inbound":
        return inbound_row(payload, event_names=config.inbound.event_names, now=now,
                           mapping=config.inbound.mapping, digest=digest)
    if arriving:
        payload = timestamps.stamp(payload, received_at=now, overwrite=False)
    try:
        return outbound_row(validate(payload), outbound_options(config), digest)
    except InvalidEvent as exc:
        return NewEvent(direction=Direction.OUTBOUND, key="-", kind="-", payload={}, status=Status.REJECTED,
                        reason=str(exc), mapping_digest=digest)


def decide_all(config: Config, payload: Any, direction: str, digest: str | None, now: Any) -> list[NewEvent]:
    """Every row intake would record for ``payload`` arriving now, in order: the event's own and those of the
    calls it brings along (tokens, subscriptions), through intake's own ``outbound_rows``. (An email change in an
    email project depends on what the ledger last sent: not shown.)"""
    if direction == "inbound":
        return [decide(config, payload, direction, digest, now, arriving=True)]
    stamped = timestamps.stamp(payload, received_at=now, overwrite=False)
    return outbound_rows([stamped], outbound_options(config), digest)[0]


def describe(row: NewEvent, mapping: OutboundMapping | None = None) -> str:
    """The decision as an operator reads it; with ``mapping``, its notes read the properties as the mapping
    did (``readings``)."""
    if row.status is Status.SKIPPED:
        return f"skipped: {row.reason} (decided by {row.label})"
    if row.status is Status.REJECTED:
        return f"rejected: {row.reason}"
    mapped = row.mapped or {}
    if "endpoint" in mapped:
        bulk = BULK_FORM.get(mapped["endpoint"])
        batched = f" (batched: POST /api/{bulk[0]}, one of its {bulk[1]})" if bulk else ""
        notes = "".join(f"\n{note}" for note in readings(row.payload, mapped["endpoint"], mapping))
        return (f"POST /api/{mapped['endpoint']}{batched}\n{json.dumps(mapped['body'], indent=2, sort_keys=True)}"
                f"{notes}")
    track = inbound.thawed(mapped)
    return (f"Segment track {track.event!r} (userId {track.user_id!r}, anonymousId {track.anonymous_id!r}, "
            f"messageId {track.message_id})\n{json.dumps(mapped, indent=2, sort_keys=True)}")


def readings(event: Any, endpoint: str, mapping: OutboundMapping | None = None) -> list[str]:
    """How the mapper read the event as Segment would: the time it decided (device clock corrected with
    ``sentAt``) and the alias that gave each ecommerce field (SPEC section 13), in the properties as ``mapping``
    shaped them (an ``order_id`` renamed from ``checkout_id`` by a per-event rule is read as ``order_id``)."""
    if not isinstance(event, dict):
        return []
    notes = []
    when = timestamps.event_time(event)
    if when is not None:
        notes.append(f"createdAt from {when.explain()}")
    name = event.get("event")
    spec = semantic.spec_event(name) if isinstance(name, str) else None
    if spec and isinstance(name, str) and spec != name.strip():
        notes.append(f"event {name!r} read as Segment's {spec!r}")
    properties = (outbound.shaped_properties(event, mapping) if mapping is not None and event.get("type") == "track"
                  else as_dict(event.get("properties")))
    if endpoint == TRACK_PURCHASE:
        order, total = semantic.pick(properties, semantic.ORDER_ID), semantic.pick(properties, semantic.ORDER_TOTAL)
        notes.append(f"id from properties.{order[0]}" if order else "id from messageId (no order_id, orderId or id)")
        if total:
            notes.append(f"total from properties.{total[0]}")
    if endpoint in (TRACK_PURCHASE, UPDATE_CART):
        products = properties.get("products")
        for index, product in enumerate(products if isinstance(products, list) else []):
            found = item_id(product) if isinstance(product, dict) else None
            if found:
                notes.append(f"items[{index}].id from properties.products[{index}].{found[0]}")
    return notes


def consent_notes(config: Config, payload: Any, row: NewEvent) -> list[str]:
    """What end-user consent (SPEC section 14) decided, or will decide in the daemon, for ``row``."""
    if row.direction is Direction.INBOUND:
        notes = []
        if config.consent.inbound_categories and row.status is Status.PENDING:
            notes.append(f"consent: in the daemon, sent only if the person's last consent seen outbound grants "
                         f"{', '.join(config.consent.inbound_categories)} (none seen yet: not checked)")
        if config.inbound.join_identities and row.status is Status.PENDING:
            notes.append("identity: in the daemon, the track gets the userId the ledger links to the email "
                         "(inbound.join_identities)")
        return notes
    required = config.consent.outbound_categories
    if not required or row.status is not Status.PENDING or not isinstance(payload, dict):
        return []
    seen = consent.preferences(payload)
    if seen is None:
        return ["consent: the event has no consent object: not checked (Segment's rule)"]
    return [f"consent: granted {', '.join(required)} (consent.outbound_categories)"]
