"""Inbound mapping: an Iterable system webhook becomes one Segment ``track`` (SPEC section 6).

Pure and deterministic. ``inbound_key`` is the idempotency key shared by webhooks and the export
API, so a retried webhook and the same event pulled later dedupe to one ledger row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync import __version__, people
from sync.errors import InvalidEvent
from sync.iterable.identifiers import has_control
from sync.mapping.rules import InboundMapping, matches, screen, shape
from sync.segment import timestamps
from sync.segment.spec import as_dict, require_storable, text_id
from sync.wire import non_finite, segment_size

SEGMENT_NAMES = {
    "emailSend": "Email Delivered",
    "emailOpen": "Email Opened",
    "emailClick": "Email Link Clicked",
    "emailBounce": "Email Bounced",
    "emailComplaint": "Email Marked as Spam",
    "emailUnSubscribe": "Unsubscribed",
    "emailSubscribe": "Subscribed",
    "hostedUnsubscribeClick": "Hosted Unsubscribe Click",
    "emailSendSkip": "Email Send Skip",
    "pushSend": "Push Delivered",
    "pushOpen": "Push Opened",
    "pushBounce": "Push Bounced",
    "pushUninstall": "Mobile App Uninstalled",
    "pushSendSkip": "Push Send Skip",
    "smsSend": "SMS Delivered",
    "smsBounce": "SMS Bounced",
    "smsClick": "SMS Clicked",
    "smsReceived": "SMS Received",
    "smsSendSkip": "SMS Send Skip",
    "inAppSend": "In App Sent",
    "inAppDelivery": "In App Delivered",
    "inAppOpen": "In App Opened",
    "inAppClick": "In App Clicked",
    "inAppSendSkip": "In App Send Skip",
    "webPushSend": "Web Push Delivered",
    "webPushClick": "Web Push Clicked",
    "webPushSendSkip": "Web Push Send Skip",
}

EMAIL_SPEC_NAMES = {"emailId": "email_id", "emailSubject": "email_subject", "campaignId": "campaign_id",
                    "campaignName": "campaign_name"}
CLICK_SPEC_NAMES = {"linkUrl": "link_url", "linkId": "link_id"}
MAX_MESSAGE_BYTES = 32 * 1024
SPEC_MAPPING = InboundMapping()


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentTrack:
    """The arguments of ``segment.analytics.Client.track`` for one webhook."""

    event: str
    user_id: str | None
    anonymous_id: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    integrations: dict[str, Any]
    timestamp: datetime
    message_id: str


def validate(webhook: Any) -> dict[str, Any]:
    """Check a webhook's shape; raises ``InvalidEvent`` naming the missing or wrong field."""
    if not isinstance(webhook, dict):
        raise InvalidEvent("body: expected a JSON object")
    name = webhook.get("eventName")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent("eventName: required (a non-empty string)")
    if "dataFields" in webhook and webhook["dataFields"] is not None and not isinstance(webhook["dataFields"], dict):
        raise InvalidEvent("dataFields: expected an object")
    if recipient(webhook) is None:
        raise InvalidEvent("email: one of email, userId or dataFields.email is required")
    require_storable(webhook, ("eventName", "email", "userId"))
    require_storable(as_dict(webhook.get("dataFields")), ("email",))
    for path, value in (("email", webhook.get("email")), ("userId", webhook.get("userId")),
                        ("dataFields.email", as_dict(webhook.get("dataFields")).get("email"))):
        if isinstance(value, str) and has_control(value):
            raise InvalidEvent(f"{path}: contains a control character")
    user_id = webhook.get("userId")
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, str | int | float)):
        raise InvalidEvent("userId: expected a string (or a number)")  # it was dropped: sent as anonymous
    overflow = non_finite(webhook)
    if overflow:
        raise InvalidEvent(f"{overflow}: a number too large to represent (not finite)")
    return webhook


def recipient(webhook: dict[str, Any]) -> str | None:
    return _email(webhook) or text_id(webhook.get("userId"))


def identities(webhook: dict[str, Any]) -> tuple[str, ...]:
    """The ``sync.people`` identifiers of the webhook's recipient (userId first)."""
    return people.of(people.identifier(webhook.get("userId")), people.email_identifier(_email(webhook)))


def _email(webhook: dict[str, Any]) -> str | None:
    for value in (webhook.get("email"), as_dict(webhook.get("dataFields")).get("email")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


# Without a messageId, these tell two real events of one recipient in the same second apart (two list
# subscriptions, two channel unsubscribes, opens on two devices); a retried webhook and the export
# record of the same event carry the same values, so they still dedupe.
# A custom event's own name (`eventName` inside its fields: the top-level one is "customEvent") and an inbound
# SMS's text (`smsMessage`) tell two such events apart too ("Trial Started" and "Plan Upgraded" in one second
# were one row; "STOP" and "HELP" from one number were one row).
DISTINGUISHING = ("emailListIds", "emailListId", "listId", "channelIds", "channelId", "messageTypeIds",
                  "messageTypeId", "workflowId", "platformEndpoint", "deviceToken", "token", "pushMessageId",
                  "inboxSessionId", "smsMessageId", "toPhoneNumber", "fromPhoneNumber", "url", "linkUrl",
                  "eventName", "smsMessage")
CLICKED = ("url", "linkUrl", "clickedUrl", "href")  # where a click names its link, by event and by source
# what else tells two clicks of one message apart: an embedded message's button and its target (a key without them
# is unchanged, so events recorded before keep their keys)
CLICK_TARGETS = ("targetUrl", "buttonIdentifier", "buttonUrl")
CUSTOM_EVENT = "customEvent"  # an export's custom events (not a system webhook): named by their own eventName


def is_click(name: str) -> bool:
    """A click event: every ``...Click`` of Iterable's (``emailClick``, ``smsClick``, ``inAppClick``,
    ``webPushClick``, ``hostedUnsubscribeClick``, ``whatsAppClick``, ``embeddedClick``: the export's
    ``dataTypeName`` list)."""
    return name.endswith("Click")


def inbound_key(webhook: dict[str, Any]) -> str:
    """Stable identity of an Iterable event: name, recipient, createdAt, message (or campaign+template and
    the fields that tell events apart when there is no messageId), URL for clicks."""
    fields = as_dict(webhook.get("dataFields"))
    message = fields.get("messageId") or f"c{fields.get('campaignId')}:t{fields.get('templateId')}"
    created = created_at(webhook)
    # a time that cannot be read keeps its raw text: two real events never merge on an empty time
    email = _email(webhook)  # an email is one person in any case; a userId is not (User-A and user-a are two)
    parts = [webhook["eventName"], email.lower() if email else (text_id(webhook.get("userId")) or ""),
             created.isoformat() if created else _raw_time(webhook), str(message)]
    if is_click(webhook["eventName"]):
        parts += _click_parts(fields)
    if not fields.get("messageId"):
        present = {name: fields[name] for name in DISTINGUISHING if fields.get(name) is not None}
        if present:
            parts.append(json.dumps(present, sort_keys=True, default=str))
    if _created_value(webhook) is None:  # no time at all: every field tells it apart (a retry has the same ones)
        parts.append(json.dumps(fields, sort_keys=True, default=str))
    return hashlib.sha256("\x1f".join(parts).encode(errors="surrogatepass")).hexdigest()


def _clicked(fields: dict[str, Any]) -> str:
    """The link a click names, wherever its event and source put it (``CLICKED``)."""
    return str(next((fields[name] for name in CLICKED if fields.get(name)), ""))


def _click_parts(fields: dict[str, Any]) -> list[str]:
    """What tells a click apart in a key: its link, and its button and target when it has them."""
    targets = {name: fields[name] for name in CLICK_TARGETS if fields.get(name) is not None}
    return [_clicked(fields), *([json.dumps(targets, sort_keys=True, default=str)] if targets else [])]


def message_key(webhook: dict[str, Any]) -> str | None:
    """The event's identity as Iterable's own message names it, whatever identifiers the source carries: event
    name, ``messageId``, ``createdAt`` and a click's link (None without a ``messageId`` or a readable time). An
    Iterable ``messageId`` is one send to one recipient, so no recipient is needed: a webhook naming only the
    userId and the export record of the same event naming the email too share it (their ``inbound_key``
    differs, and both once reached Segment). The ledger's second idempotency key (revision 0010)."""
    fields = as_dict(webhook.get("dataFields"))
    message, created = fields.get("messageId"), created_at(webhook)
    if not message or created is None:
        return None
    parts = [webhook["eventName"], str(message), created.isoformat()]
    if is_click(webhook["eventName"]):
        parts += _click_parts(fields)
    return "m:" + hashlib.sha256("\x1f".join(parts).encode(errors="surrogatepass")).hexdigest()[:60]


def message_id(key: str) -> str:
    return f"iterable-{key[:48]}"


def _created_value(webhook: dict[str, Any]) -> Any:
    return as_dict(webhook.get("dataFields")).get("createdAt", webhook.get("createdAt"))


def created_at(webhook: dict[str, Any]) -> datetime | None:
    """``dataFields.createdAt`` (or an export record's top-level one) as aware UTC, in any of the forms
    Iterable sends (``sync.segment.timestamps.iterable_time``); None when absent or unreadable."""
    return timestamps.iterable_time(_created_value(webhook))


def _raw_time(webhook: dict[str, Any]) -> str:
    value = _created_value(webhook)
    return "" if value is None else f"raw:{json.dumps(value, sort_keys=True, default=str)}"


def _event_time(webhook: dict[str, Any], received_at: datetime) -> datetime:
    """When the event happened: its createdAt; received_at when it has none, as Segment stamps an event
    without a timestamp. A createdAt that is there but cannot be read is refused, never replaced by now."""
    created = created_at(webhook)
    if created is not None:
        return created
    if _created_value(webhook) is None:
        return received_at
    where = "dataFields.createdAt" if "createdAt" in as_dict(webhook.get("dataFields")) else "createdAt"
    raise InvalidEvent(f"{where}: not a time Iterable sends (yyyy-MM-dd HH:mm:ss +00:00, ISO-8601 or epoch)")


def skipped_by(webhook: dict[str, Any], mapping: InboundMapping) -> tuple[str, str] | None:
    """(reason, config key) when ``[inbound.filter]`` keeps this event out of Segment."""
    name = webhook["eventName"].strip()
    if mapping.allow and not matches(mapping.allow, name):
        return f"{name} is not in inbound.filter.allow", "inbound.filter.allow"
    denied = matches(mapping.deny, name)
    return (f"{name} matches inbound.filter.deny {denied!r}", "inbound.filter.deny") if denied else None


def to_track(webhook: dict[str, Any], *, event_names: str, received_at: datetime,
             mapping: InboundMapping = SPEC_MAPPING) -> SegmentTrack:
    """Map a validated webhook; raises ``InvalidEvent`` when the message would exceed 32 KB."""
    name = webhook["eventName"].strip()
    fields = as_dict(webhook.get("dataFields"))
    email, user_id = _email(webhook), text_id(webhook.get("userId"))
    context: dict[str, Any] = {"integration": {"name": "iterable", "version": __version__}}
    if email:
        context["traits"] = {"email": email}
    for source, target in (("ip", "ip"), ("userAgent", "userAgent")):
        if isinstance(fields.get(source), str):
            context[target] = fields[source]
    own = fields.get("eventName") if name == CUSTOM_EVENT else None  # a custom event's own name
    own = own.strip() if isinstance(own, str) and own.strip() else None
    track = SegmentTrack(
        event=mapping.names.get(name) or own or (SEGMENT_NAMES.get(name, name) if event_names == "segment"
                                                 else name),
        user_id=user_id,
        anonymous_id=None if user_id else email,
        properties=_properties(name, fields, mapping),
        context=context,
        integrations={"Iterable": False},
        timestamp=_event_time(webhook, received_at),
        message_id=message_id(inbound_key(webhook)),
    )
    if segment_size(_as_message(track)) > MAX_MESSAGE_BYTES:
        raise InvalidEvent("message larger than Segment's 32 KB limit per event")
    return track


def _properties(name: str, fields: dict[str, Any], mapping: InboundMapping) -> dict[str, Any]:
    """dataFields through allow -> deny -> rename, then the Email-spec aliases, read from the original
    fields, but never for a field the rules kept out (a denied emailSubject stays out as email_subject)."""
    properties = shape(fields, mapping.properties)
    if mapping.email_spec_properties and (name.startswith("email") or name == "hostedUnsubscribeClick"):
        names = {**EMAIL_SPEC_NAMES, **(CLICK_SPEC_NAMES if is_click(name) else {})}
        kept = set(screen(fields, mapping.properties))
        properties.update({target: fields[src] for src, target in names.items()
                           if fields.get(src) is not None and src in kept})
    return properties


def frozen(track: SegmentTrack) -> dict[str, Any]:
    """A track as the ledger stores it (decided at intake, sent as stored)."""
    return {"event": track.event, "user_id": track.user_id, "anonymous_id": track.anonymous_id,
            "properties": track.properties, "context": track.context, "integrations": track.integrations,
            "timestamp": track.timestamp.isoformat(), "message_id": track.message_id}


def thawed(stored: dict[str, Any]) -> SegmentTrack:
    return SegmentTrack(event=stored["event"], user_id=stored["user_id"], anonymous_id=stored["anonymous_id"],
                        properties=stored["properties"], context=stored["context"],
                        integrations=stored["integrations"], timestamp=datetime.fromisoformat(stored["timestamp"]),
                        message_id=stored["message_id"])


def _as_message(track: SegmentTrack) -> dict[str, Any]:
    """Roughly what the library will send, to check the size limit before the row is accepted."""
    return {"type": "track", "event": track.event, "userId": track.user_id, "anonymousId": track.anonymous_id,
            "properties": track.properties, "context": {**track.context, "library": {"name": "analytics-python",
            "version": "2.4.0"}}, "integrations": track.integrations, "timestamp": track.timestamp.isoformat(),
            "messageId": track.message_id, "sentAt": track.timestamp.isoformat()}
