"""The calls an identify brings along (SPEC section 11) obey ``[outbound.traits]`` like its own dataFields."""

from __future__ import annotations

from typing import Any

import pytest

from sync.mapping.rules import OutboundMapping, TraitRules
from sync.outbound.companions import derived
from sync.outbound.mapper import Options

IDENTIFY = {"type": "identify", "userId": "u1", "messageId": "m1",
            "traits": {"email": "a@b.co", "emailListIds": [1, 2], "unsubscribedChannelIds": [5], "plan": "x"}}


def subscription_bodies(rules: TraitRules) -> list[dict[str, Any]]:
    options = Options(mapping=OutboundMapping(traits=rules))
    return [d.call.body for d in derived(IDENTIFY, options, "u1") if d.kind == "subscriptions" and d.call]


@pytest.mark.parametrize(("rules", "expected"), [
    (TraitRules(), [{"userId": "u1", "emailListIds": [1, 2], "unsubscribedChannelIds": [5]}]),
    (TraitRules(deny=("emailListIds", "unsubscribed*")), []),
    (TraitRules(deny=("unsubscribed*",)), [{"userId": "u1", "emailListIds": [1, 2]}]),
    (TraitRules(allow=("plan", "unsubscribedChannelIds")), [{"userId": "u1", "unsubscribedChannelIds": [5]}]),
    (TraitRules(allow=("plan",)), []),
])
def test_traits_allow_and_deny_choose_the_subscription_traits_sent(
        rules: TraitRules, expected: list[dict[str, Any]]) -> None:
    """A denied trait reached Iterable anyway through ``users/updateSubscriptions``."""
    assert subscription_bodies(rules) == expected
