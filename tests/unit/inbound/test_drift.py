"""The webhook drift judgement (sync.inbound.drift.assess): a table of webhooks as GET /api/webhooks lists them
(fields from Iterable's spec, GetWebhooksResponse) against [inbound] and server.public_url."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.inbound.drift import assess
from tests.support import WEBHOOK_TOKEN, make_config

NOW = datetime(2026, 11, 30, tzinfo=UTC)
URL = "https://sync.example.com/iterable/webhook"


def webhook(**fields: Any) -> dict[str, Any]:
    return {"id": 7, "endpoint": URL, "enabled": True, "authType": "Basic", "blastSendEnabled": True,
            "triggeredSendEnabled": True, "channelIds": [], "messageTypeIds": [], **fields}


def config(public_url: str = "https://sync.example.com/", header: str = "Authorization") -> Any:
    base = make_config(ledger_url="sqlite:///:memory:")
    return replace(base, server=replace(base.server, public_url=public_url),
                   inbound=replace(base.inbound, auth_header=header))


CASES = [
    ("as set up", [webhook()], None),
    ("OAuth2", [webhook(authType="OAuth2")], None),
    ("merge parameters in the query", [webhook(endpoint=f"{URL}?campaignId={{{{campaignId}}}}")], None),
    ("host in capitals, trailing slash", [webhook(endpoint="https://SYNC.example.com/iterable/webhook/")], None),
    ("disabled", [webhook(enabled=False)], "disabled"),
    ("no auth", [webhook(authType="NoAuth")], "NoAuth"),
    ("blast campaigns off", [webhook(blastSendEnabled=False)], "blastSendEnabled"),
    ("triggered campaigns off", [webhook(triggeredSendEnabled=False)], "triggeredSendEnabled"),
    ("another URL", [webhook(endpoint="https://old.example.com/iterable/webhook")], "no system webhook"),
    ("another path", [webhook(endpoint="https://sync.example.com/hooks/iterable")], "no system webhook"),
    ("none at all", [], "no system webhook"),
    ("a good one beside a drifted one", [webhook(id=1, enabled=False), webhook(id=2)], None),
    ("headers shown, wrong token", [webhook(headers=[{"key": "Authorization", "value": "old-token"}])],
     "none of inbound.auth_tokens"),
    ("headers shown, our token", [webhook(headers=[{"key": "authorization", "value": WEBHOOK_TOKEN}])], None),
]


@pytest.mark.parametrize(("case", "webhooks", "problem"), CASES, ids=[c[0] for c in CASES])
def test_drift_is_judged_from_what_iterable_shows(case: str, webhooks: list[dict[str, Any]],
                                                  problem: str | None) -> None:
    report = assess(webhooks, config(), NOW)
    assert report.ok is (problem is None), report.problems
    if problem:
        assert problem in " | ".join(report.problems)
    assert WEBHOOK_TOKEN not in str(report.detail())


def test_a_custom_header_cannot_be_seen_so_only_the_rest_is_judged() -> None:
    assert assess([webhook(authType="NoAuth")], config(header="X-Iterable-Token"), NOW).ok
    report = assess([webhook(endpoint="http://sync.example.com/iterable/webhook")],
                    config(public_url="http://sync.example.com"), NOW)
    assert not report.ok and "only https://" in report.problems[0]
