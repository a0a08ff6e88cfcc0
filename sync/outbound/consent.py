"""End-user consent (SPEC section 14), as Segment's Consent Management and RudderStack's consent filtering
define it. Pure.

- Segment: ``context.consent.categoryPreferences`` maps category ids to booleans; an event whose preferences
  deny a required category, or whose preferences object is empty, is not sent; an event without a consent
  object is not checked ("Events without the consent object continue to flow to destinations without consent
  enforcement": twilio.com/docs/segment/privacy/consent-management/consent-in-segment-connections).
- RudderStack: ``context.consentManagement`` with ``allowedConsentIds`` / ``deniedConsentIds``; with the "and"
  logic a destination gets the event only when the end user consented to every configured category
  (rudderstack.com/docs/data-governance/consent-management/custom-consent-manager).

Category ids match exactly (both vendors call them case-sensitive ids). Consent is read and obeyed, never
written anywhere upstream (no Iterable subscription change comes from it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SKIP_PREFIX = "filtered by end-user consent"


def preferences(event: Mapping[str, Any]) -> dict[str, bool] | None:
    """The consent an event carries, as category id -> granted; ``None`` when it carries no consent object.

    ``{"context": {"consent": {"categoryPreferences": {"Marketing": true, "Ads": false}}}}``
    -> ``{"Marketing": True, "Ads": False}``; RudderStack's allowed ids become True, denied ids False."""
    context = event.get("context")
    if not isinstance(context, Mapping):
        return None
    segment = context.get("consent")
    if isinstance(segment, Mapping) and "categoryPreferences" in segment:
        found = segment["categoryPreferences"]
        return {str(k): v is True for k, v in found.items()} if isinstance(found, Mapping) else {}
    rudder = context.get("consentManagement")
    if isinstance(rudder, Mapping):
        granted = {str(c): True for c in _ids(rudder.get("allowedConsentIds"))}
        return {**granted, **{str(c): False for c in _ids(rudder.get("deniedConsentIds"))}}
    return None


def _ids(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, str | int) and not isinstance(v, bool)] if isinstance(value, list) \
        else []


def denied(consent: Mapping[str, bool] | None, required: Sequence[str]) -> str | None:
    """The first required category ``consent`` does not grant (None: it may go). ``None`` consent (no
    object on the event, or no consent ever seen for the person) is not checked."""
    if consent is None or not required:
        return None
    return next((category for category in required if consent.get(category) is not True), None)


def reason(category: str) -> str:
    return f"{SKIP_PREFIX}: {category}"
