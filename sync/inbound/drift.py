"""Webhook drift: is Iterable's system webhook still the one ``[inbound]`` expects? (SPEC section 15)

Iterable's system webhook is set up by hand in Iterable's UI; an edit there (URL, auth, disabled) stops
inbound events without an error anywhere. ``GET /api/webhooks`` answers ``{"webhooks": [{"id", "endpoint",
"enabled", "authType" ("NoAuth" | "Basic" | "OAuth2"), "blastSendEnabled", "triggeredSendEnabled",
"channelIds", "messageTypeIds"}]}`` (iterable-api-docs.json ``GetWebhooksResponse``). That answer holds
neither the auth token nor custom headers nor the event types a webhook sends; where an answer does carry
``headers`` (``[{"key", "value"}]``) they are compared too, and the event types stay a note to check by hand.

``assess`` is pure; ``fetch`` is the one request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sync.config import Config
from sync.errors import RetryableUpstream
from sync.http import auth
from sync.iterable.client import IterableClient

WEBHOOKS = "webhooks"
PATH = "/iterable/webhook"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookReport:
    """The outcome of one check: ``ok`` when a webhook points at us and nothing drifted."""

    ok: bool
    expected: str  # the URL a webhook must point at
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    webhook_id: int | None = None
    checked_at: datetime | None = None

    def detail(self) -> dict[str, Any]:
        """The report as ``/readyz`` shows it (no token, no other webhook's URL)."""
        return {"ok": self.ok, "expected": self.expected, "webhook_id": self.webhook_id,
                "problems": list(self.problems), "notes": list(self.notes),
                "checked_at": self.checked_at.isoformat() if self.checked_at else None}


def expected_url(public_url: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}"


def _points_at(endpoint: Any, expected: str) -> bool:
    """Same scheme, host, port and path; a query (Iterable's merge parameters) does not matter."""
    if not isinstance(endpoint, str):
        return False
    got, want = urlsplit(endpoint.strip()), urlsplit(expected)
    return (got.scheme.lower(), got.netloc.lower(), got.path.rstrip("/")) == \
        (want.scheme.lower(), want.netloc.lower(), want.path.rstrip("/"))


def assess(webhooks: Sequence[Any], config: Config, now: datetime) -> WebhookReport:
    """Judge Iterable's webhooks against ``server.public_url`` and ``[inbound]``."""
    expected = expected_url(config.server.public_url)
    ours = [w for w in webhooks if isinstance(w, dict) and _points_at(w.get("endpoint"), expected)]
    if not ours:
        hosts = sorted({urlsplit(str(w.get("endpoint", ""))).netloc for w in webhooks if isinstance(w, dict)})
        seen = f"the project's {len(webhooks)} webhook(s) point at {', '.join(hosts) or 'nothing'}"
        return WebhookReport(ok=False, expected=expected, checked_at=now,
                             problems=(f"no system webhook points at {expected} ({seen})",))
    reports = [_judge(w, config, expected, now) for w in ours]
    return next((r for r in reports if r.ok), reports[0])


def _judge(webhook: dict[str, Any], config: Config, expected: str, now: datetime) -> WebhookReport:
    problems = []
    if webhook.get("enabled") is not True:
        problems.append("the webhook is disabled in Iterable: no event is sent")
    problems += _auth_problems(webhook, config)
    for flag, kind in (("blastSendEnabled", "blast"), ("triggeredSendEnabled", "triggered")):
        if webhook.get(flag) is False:
            problems.append(f"{flag} is false: events of {kind} campaigns are not sent")
    notes = ["Iterable's API does not say which event types a webhook sends: check them in Integrations > "
             "System Webhooks against [inbound] (and [reconcile].event_types)"]
    if not expected.startswith("https://"):
        problems.append(f"{expected}: Iterable calls only https:// webhook URLs")
    webhook_id = webhook.get("id") if isinstance(webhook.get("id"), int) else None
    return WebhookReport(ok=not problems, expected=expected, problems=tuple(problems), notes=tuple(notes),
                         webhook_id=webhook_id, checked_at=now)


def _auth_problems(webhook: dict[str, Any], config: Config) -> list[str]:
    """Whether the webhook sends ``inbound.auth_header`` with one of ``inbound.auth_tokens`` (values never shown)."""
    inbound, kind = config.inbound, webhook.get("authType")
    headers = webhook.get("headers")
    if isinstance(headers, list):
        sent = [h.get("value") for h in headers if isinstance(h, dict)
                and str(h.get("key", "")).lower() == inbound.auth_header.lower()]
        if any(isinstance(v, str) and auth.matches_any(v, inbound.auth_tokens) for v in sent):
            return []
        if sent:
            return [f"the webhook's {inbound.auth_header} header holds none of inbound.auth_tokens: "
                    "every event is refused (401)"]
    if inbound.auth_header.lower() == "authorization" and kind == "NoAuth":
        return ["authType is NoAuth: Iterable sends no Authorization header, so every event is refused (401)"]
    if inbound.auth_header.lower() != "authorization" and not isinstance(headers, list):
        return []  # a custom header: Iterable's answer does not show it
    if kind not in ("Basic", "OAuth2", "NoAuth"):
        return [f"authType {kind!r} is not one Iterable documents (NoAuth, Basic, OAuth2)"]
    return []


async def fetch(client: IterableClient) -> list[Any]:
    """Iterable's webhooks (``GET /api/webhooks``); raises ``RetryableUpstream`` when it cannot tell."""
    status, raw, _ = await client.get(WEBHOOKS, {})
    try:
        webhooks = json.loads(raw).get("webhooks") if status == 200 else None
    except (ValueError, AttributeError):
        webhooks = None
    if not isinstance(webhooks, list):
        raise RetryableUpstream(f"{WEBHOOKS}: HTTP {status}, no webhooks in the answer")
    return webhooks


async def check(client: IterableClient, config: Config, now: datetime) -> WebhookReport:
    return assess(await fetch(client), config, now)
