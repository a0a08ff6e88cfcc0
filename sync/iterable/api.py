"""What the daemon knows about Iterable's API that more than one module needs: event type names, the export
endpoint, and which HTTP statuses are worth trying again.

Sources: Iterable's API reference (``GET /api/export/data.json``'s ``dataTypeName`` values; system webhook
``eventName`` values, SPEC section 6) and its guidance on retries (429 rate limits, 5xx; 425 Too Early and 408 are
the generic HTTP "try again" answers). Pure: no I/O, no third-party import.
"""

from __future__ import annotations

EXPORT = "export/data.json"

# the eventNames a system webhook carries (SPEC section 6's table and the other channel events Iterable sends)
EVENT_TYPES = frozenset(
    "emailSend emailOpen emailClick emailBounce emailComplaint emailUnSubscribe emailSubscribe "
    "hostedUnsubscribeClick emailSendSkip pushSend pushOpen pushBounce pushUninstall pushSendSkip smsSend "
    "smsBounce smsClick smsReceived smsSendSkip inAppSend inAppDelivery inAppOpen inAppClick inAppSendSkip "
    "inAppClose inAppDelete inAppRecall webPushSend webPushClick webPushSendSkip inboxSession "
    "inboxMessageImpression embeddedSend embeddedSendSkip embeddedClick embeddedReceived embeddedImpression "
    "embeddedSession smsUsageInfo journeyExit whatsAppBounce whatsAppClick whatsAppReceived whatsAppSeen "
    "whatsAppSend whatsAppSendSkip whatsAppUsageInfo rcsSend rcsSendSkip".split())

# the export API's dataTypeName values: the event types plus the records that are not channel events
EXPORT_TYPES = EVENT_TYPES | frozenset({"purchase", "customEvent", "user", "unknownSession"})

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retryable(status: int) -> bool:
    """Whether an answer with this HTTP status may succeed if sent again: 408, 425, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or status >= 500
