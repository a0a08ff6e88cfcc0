"""Calls an event brings along besides its own (SPEC section 11): a push or browser token to register,
subscription changes to record as subscriptions. Each becomes a row of its own, recorded right after the
event's row, for the same person (so in order after the call that creates the user), with an idempotency
key of its own: a token is registered once per person and token, whatever number of events carry it. Pure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sync.mapping.rules import FieldRules, matches
from sync.outbound.mapper import (
    UPDATE_SUBSCRIPTIONS,
    IterableCall,
    Options,
    naming,
    raw_ids,
    subscription_lists,
)
from sync.segment.semantics import destination_settings
from sync.segment.spec import as_dict

# Platform by name, compared without case: Segment's ``context.device.type`` ("ios", "android") and the
# ``context.os.name`` values its libraries send (analytics-ios "iOS"/"iPadOS"/"macOS"/"tvOS"/"watchOS",
# analytics-android "Android"); browsers for web push (SPEC sections 11 and 13).
PLATFORMS = {
    **dict.fromkeys(("ios", "ipados", "iphone os", "macos", "mac os", "mac os x", "watchos", "tvos", "visionos"),
                    "APNS"),
    **dict.fromkeys(("android", "fire os", "fireos", "android tv"), "GCM"),
    **dict.fromkeys(("web", "browser", "chrome", "firefox", "safari", "edge", "opera", "samsung internet"), "WEB"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Derived:
    key: str
    kind: str
    call: IterableCall | None = None
    skip: str | None = None


def derived(event: dict[str, Any], options: Options, user_key: str | None,
            ids: dict[str, Any] | None = None) -> list[Derived]:
    """The companion calls of a validated event that is sent (identify or track); ``ids`` are its ``raw_ids``
    when the caller has them."""
    if event.get("type") not in ("identify", "track"):
        return []
    ids = raw_ids(event, options.mapping.identity) if ids is None else ids
    if not ids:
        return []
    found = [_token(event, options, ids, user_key)]
    if event["type"] == "identify" and options.subscriptions == "update_subscriptions":
        found.append(_subscriptions(event, options, ids, user_key))
    return [d for d in found if d is not None]


def _token(event: dict[str, Any], options: Options, ids: dict[str, Any], user_key: str | None) -> Derived | None:
    context = as_dict(event.get("context"))
    device, system = as_dict(context.get("device")), as_dict(context.get("os"))
    token = device.get("token") or system.get("token")
    if not isinstance(token, str) or not token.strip():
        return None
    person = naming(ids, options)
    digest = hashlib.sha256(f"{sorted(person.items())}|{token}".encode(errors="surrogatepass")).hexdigest()[:40]
    key = f"token:{digest}"
    platform = _platform(device, system, event)
    if platform is None:
        return Derived(key=key, kind="device token",
                       skip="push token of an unknown platform (context.device.type / context.os.name name no "
                            "iOS, Android or browser)")
    if platform == "WEB":
        return Derived(key=key, kind="browser token", call=IterableCall(
            endpoint="users/registerBrowserToken", body={**person, "browserToken": token}, user_key=user_key))
    app = options.push_apps.get(platform) or options.push_apps.get("")
    if not app:
        return Derived(key=key, kind="device token",
                       skip=f"no push application name for {platform} ([iterable.push] application_name)")
    body = {**person, "device": {"token": token, "platform": platform, "applicationName": app}}
    if "userId" in person:
        body["preferUserId"] = True
    return Derived(key=key, kind="device token", call=IterableCall(endpoint="users/registerDeviceToken", body=body,
                                                                    user_key=user_key))


def _platform(device: dict[str, Any], system: dict[str, Any], event: dict[str, Any]) -> str | None:
    """APNS, APNS_SANDBOX or GCM for a device token, WEB for a browser's; None when nothing says which."""
    chosen = destination_settings(event.get("integrations")).get("pushPlatform")
    if chosen in ("APNS", "APNS_SANDBOX", "GCM"):
        return str(chosen)
    for name in (device.get("type"), system.get("name")):
        found = PLATFORMS.get(name.strip().lower()) if isinstance(name, str) else None
        if found:
            return found
    return "WEB" if system.get("token") and not device.get("token") else None


def _subscriptions(event: dict[str, Any], options: Options, ids: dict[str, Any],
                   user_key: str | None) -> Derived | None:
    rules = options.mapping.traits
    changes = {k: v for k, v in subscription_lists(as_dict(event.get("traits"))).items() if _sent(k, rules)}
    if not changes:
        return None
    call = IterableCall(endpoint=UPDATE_SUBSCRIPTIONS, body={**naming(ids, options), **changes},
                        user_key=user_key)
    return Derived(key=f"{event['messageId']}:subscriptions", kind="subscriptions", call=call)


def _sent(trait: str, rules: FieldRules) -> bool:
    """``[outbound.traits]`` allow (when set) and deny hold for the subscription traits too: a trait the user
    keeps out of Iterable does not reach it through ``users/updateSubscriptions`` either."""
    return (not rules.allow or matches(rules.allow, trait) is not None) and matches(rules.deny, trait) is None
