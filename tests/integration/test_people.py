"""People, not just events (issue 12): deletion requests become Iterable deletions in order, and the ledger
forgets the person in both directions."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from sync.app import Daemon
from sync.config import Config
from sync.ledger.schema import events, identities
from sync.model import Direction, Status
from sync.sandbox import FakeIterable, FakeSegment, Fault
from tests.conftest import STRICT, serving, started
from tests.integration.test_outbound import post, url
from tests.support import ITERABLE_KEY, WEBHOOK_TOKEN, sign, wait_for

OUT = Direction.OUTBOUND
PERSON = ("del-user", "del@example.com")


async def rows(daemon: Daemon) -> list[dict[str, Any]]:
    async with daemon.ledger.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(events))).mappings()]


async def status(daemon: Daemon, key: str) -> Status | None:
    row = await daemon.ledger.get(OUT, key)
    return row.status if row else None


async def test_a_deletion_skips_the_persons_earlier_rows_deletes_in_iterable_and_forgets_them(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], fake_segment: tuple[FakeSegment, str]) -> None:
    fake, _ = fake_iterable
    segment, _ = fake_segment
    fake.faults.add(Fault(endpoint="users/bulkUpdate", status=503, times=100_000),
                    Fault(endpoint="events/trackBulk", status=503, times=100_000))
    segment.faults.add(Fault(status=503, times=100_000))
    user_id, email = PERSON
    earlier = [{"type": "identify", "userId": user_id, "messageId": "p-1", "traits": {"email": email, "plan": "x"}},
               {"type": "track", "userId": user_id, "event": "Viewed", "messageId": "p-2"},
               {"type": "group", "userId": user_id, "groupId": "g", "messageId": "p-3"}]  # skipped, still theirs
    assert (await post(daemon, "/v1/batch", {"batch": earlier}))[0] == 200
    async with aiohttp.ClientSession() as session, session.post(
            url(daemon, "/iterable/webhook"), headers={"Authorization": WEBHOOK_TOKEN},
            json={"email": email, "userId": user_id, "eventName": "emailOpen",
                  "dataFields": {"createdAt": "2026-11-01 10:00:00 +00:00", "messageId": "mo"}}) as reply:
        assert reply.status == 200
    await wait_for(lambda: _attempted(daemon, "p-1"))
    fake.project.users.append({"email": email, "userId": user_id, "dataFields": {}})  # known to Iterable
    deletion = json.dumps({"type": "delete", "userId": user_id, "messageId": "del-1"}).encode()
    assert await post(daemon, "/segment/webhook", deletion, {"X-Signature": sign(deletion)}) == \
        (200, {"success": True})
    assert await status(daemon, "p-1") is Status.SKIPPED and await status(daemon, "p-2") is Status.SKIPPED
    await wait_for(lambda: status_is(daemon, "del-1", Status.DELIVERED))
    await wait_for(lambda: fake.idle)
    assert fake.deletions == [{"userId": user_id}] and fake.find_user(user_id=user_id) is None
    assert not any(body.get("events") or body.get("users") for _, body in fake.requests)  # nothing re-created
    stored = json.dumps(await rows(daemon), default=str)
    assert user_id not in stored and email not in stored and "plan" not in stored  # the ledger forgot them
    async with daemon.ledger.engine.connect() as conn:
        assert (await conn.execute(sa.select(identities))).all() == []
    reasons = {r["key"]: r["reason"] for r in await rows(daemon)}
    assert reasons["p-1"] == reasons["p-2"] == "user deleted"
    assert 'endpoint="users/delete"' in daemon.metrics.render().decode()  # no user id in a metric label


async def _attempted(daemon: Daemon, key: str) -> bool:
    row = await daemon.ledger.get(OUT, key)
    return row is not None and row.attempts >= 1


async def status_is(daemon: Daemon, key: str, expected: Status) -> bool:
    return await status(daemon, key) is expected


async def test_deleting_a_user_iterable_does_not_have_counts_as_done(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    raw = json.dumps({"type": "delete", "userId": "never-seen", "messageId": "del-2"}).encode()
    assert (await post(daemon, "/segment/webhook", raw, {"X-Signature": sign(raw)}))[0] == 200
    await wait_for(lambda: status_is(daemon, "del-2", Status.DELIVERED))
    assert 'endpoint="users/delete",status="400"' in daemon.metrics.render().decode()


@pytest.mark.parametrize(("mode", "expected"), [("forget", Status.DELIVERED), ("skip", Status.SKIPPED)])
async def test_deletion_modes(stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str],
                              mode: str, expected: Status) -> None:
    fake, _ = fake_iterable
    fake.add_users(1, "f")
    config = replace(stack_config, outbound=replace(stack_config.outbound, deletion=mode))
    async with started(config, ledger_url) as daemon:
        raw = json.dumps({"type": "delete", "userId": "f0", "messageId": "del-3"}).encode()
        assert (await post(daemon, "/segment/webhook", raw, {"X-Signature": sign(raw)}))[0] == 200
        await wait_for(lambda: status_is(daemon, "del-3", expected))
        await wait_for(lambda: fake.idle)
    if mode == "forget":
        assert fake.forgets == [{"userId": "f0"}] and "userId:f0" in fake.project.forgotten
    else:
        assert fake.forgets == [] and fake.deletions == [] and fake.find_user(user_id="f0") is not None


def push_config(stack_config: Config, **push: str) -> Config:
    from sync.config import PushConfig

    return replace(stack_config, iterable=replace(stack_config.iterable, push=PushConfig(**push)))


async def test_push_and_browser_tokens_are_registered_once_per_person_and_token(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    config = push_config(stack_config, apns_application_name="com.example.ios", gcm_application_name="com.example")
    ios = {"device": {"token": "apns-token-1", "type": "ios"}, "os": {"name": "iOS"}}
    android = {"device": {"token": "fcm-token-1", "type": "android"}}
    web = {"os": {"name": "Chrome", "token": "web-push-1"}}
    events = [
        {"type": "identify", "userId": "tok", "messageId": "t-1", "traits": {"email": "tok@example.com"}, "context": ios},
        {"type": "track", "userId": "tok", "event": "Opened", "messageId": "t-2", "context": ios},  # the same token
        {"type": "track", "userId": "tok", "event": "Opened", "messageId": "t-3", "context": android},
        {"type": "track", "userId": "tok", "event": "Visited", "messageId": "t-4", "context": web},
    ]
    async with started(config, ledger_url) as daemon:
        assert (await post(daemon, "/v1/batch", {"batch": events}))[0] == 200
        await wait_for(lambda: _settled(daemon), within=20)
        await wait_for(lambda: fake.idle)
    user = fake.find_user(user_id="tok")
    assert user is not None
    assert user["devices"] == [{"token": "apns-token-1", "platform": "APNS", "applicationName": "com.example.ios"},
                               {"token": "fcm-token-1", "platform": "GCM", "applicationName": "com.example"}]
    assert user["browserTokens"] == ["web-push-1"]
    assert len(fake.registrations) == 3  # the iOS token came twice and was registered once
    order = [e for e, _ in fake.requests if e in ("users/update", "users/registerDeviceToken")]
    assert order[0] == "users/update"  # after the call that creates the user


async def _settled(daemon: Daemon) -> bool:
    counts = (await daemon.ledger.stats()).counts
    return not counts.get(("outbound", "pending")) and counts.get(("outbound", "delivered"), 0) > 0


async def test_a_token_without_a_push_application_name_is_skipped_saying_which_key(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    event = {"type": "identify", "userId": "np", "messageId": "np-1",
             "context": {"device": {"token": "t", "type": "android"}}}
    assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
    rows_by_kind = {r["kind"]: r for r in await rows(daemon)}
    assert rows_by_kind["device token"]["status"] == "skipped"
    assert "[iterable.push] application_name" in rows_by_kind["device token"]["reason"]


@pytest.mark.parametrize("mode", ["update_subscriptions", "data_fields"])
async def test_subscription_traits_go_through_update_subscriptions(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str], mode: str) -> None:
    """bulkUpdate would change subscription state silently; updateSubscriptions records the events."""
    fake, _ = fake_iterable
    config = replace(stack_config, outbound=replace(stack_config.outbound, subscriptions=mode))
    event = {"type": "identify", "userId": "sub", "messageId": "s-1",
             "traits": {"email": "sub@example.com", "plan": "pro", "emailListIds": [1, 2],
                        "unsubscribedChannelIds": [7]}}
    async with started(config, ledger_url) as daemon:
        assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
        await wait_for(lambda: _settled(daemon), within=20)
        await wait_for(lambda: fake.idle)
    user = fake.find_user(user_id="sub")
    assert user is not None and user["dataFields"]["plan"] == "pro"
    if mode == "update_subscriptions":
        assert fake.subscription_events == [{"userId": "sub", "emailListIds": [1, 2], "unsubscribedChannelIds": [7]}]
        assert fake.project.silent_subscription_changes == [] and "emailListIds" not in user["dataFields"]
    else:
        assert fake.subscription_events == [] and user["dataFields"]["emailListIds"] == [1, 2]
        assert fake.project.silent_subscription_changes


async def test_denied_subscription_traits_do_not_reach_iterable(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str]) -> None:
    """``[outbound.traits] deny`` held for the identify's dataFields only: the subscription call still sent them."""
    from sync.mapping.rules import TraitRules

    fake, _ = fake_iterable
    mapping = replace(stack_config.outbound.mapping, traits=TraitRules(deny=("emailListIds", "unsubscribed*")))
    config = replace(stack_config, outbound=replace(stack_config.outbound, mapping=mapping))
    event = {"type": "identify", "userId": "deny-sub", "messageId": "ds-1",
             "traits": {"email": "a@b.co", "emailListIds": [1, 2], "unsubscribedChannelIds": [5], "plan": "x"}}
    async with started(config, ledger_url) as daemon:
        assert (await post(daemon, "/v1/batch", {"batch": [event]}))[0] == 200
        await wait_for(lambda: _settled(daemon), within=20)
        await wait_for(lambda: fake.idle)
        assert await daemon.ledger.get(OUT, "ds-1:subscriptions") is None
    user = fake.find_user(user_id="deny-sub")
    assert user is not None and user["dataFields"]["plan"] == "x"
    assert fake.subscription_events == [] and "emailListIds" not in user["dataFields"]
    assert not [e for e, _ in fake.requests if "ubscriptions" in e]


async def test_an_anonymous_visitors_journey_arrives_after_sign_up_in_order_with_its_times(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    fake, _ = fake_iterable
    visit = [{"type": "page", "anonymousId": "visitor-1", "name": "Pricing", "messageId": "a-1",
              "timestamp": "2026-11-01T10:00:00Z"},
             {"type": "track", "anonymousId": "visitor-1", "event": "Plan Compared", "messageId": "a-2",
              "timestamp": "2026-11-01T10:01:00Z"},
             {"type": "track", "anonymousId": "someone-else", "event": "Bounced", "messageId": "b-1"},
             {"type": "track", "userId": "known", "event": "Still Here", "messageId": "k-1"}]
    assert (await post(daemon, "/v1/batch", {"batch": visit}))[0] == 200
    await wait_for(lambda: "k-1" in fake.events)  # held events never block anybody else
    assert {await status(daemon, k) for k in ("a-1", "a-2", "b-1")} == {Status.HELD}
    assert fake.find_user(user_id="visitor") is None
    await daemon.jobs.refresh_gauges()
    assert 'sync_events_held{direction="outbound"} 3.0' in daemon.metrics.render().decode()
    sign_up = {"type": "identify", "userId": "visitor", "anonymousId": "visitor-1", "messageId": "s-1",
               "traits": {"email": "visitor@example.com"}}
    assert (await post(daemon, "/v1/batch", {"batch": [sign_up]}))[0] == 200
    await wait_for(lambda: "a-2" in fake.events, within=10)  # Iterable event id: the original messageId
    names = [e["eventName"] for e in fake.event_log if e.get("userId") == "visitor"]
    assert names == ["Pricing page", "Plan Compared"]  # in received order
    assert fake.events["a-1"]["createdAt"] == 1793527200  # the original time (2026-11-01 10:00 UTC)
    order = [e for e, body in fake.requests if '"visitor"' in json.dumps(body)]
    assert order[0] in ("users/bulkUpdate", "users/update")  # the identifying call went first
    assert await status(daemon, "a-1") is Status.SKIPPED and await status(daemon, "b-1") is Status.HELD
    assert (await daemon.ledger.get(OUT, "a-1")).reason == "released as a-1:released"  # type: ignore[union-attr]


async def test_held_events_expire_and_the_hold_is_bounded(daemon: Daemon) -> None:
    from datetime import UTC, datetime, timedelta

    from sync.outbound import anonymous

    events = [{"type": "track", "anonymousId": "flood", "event": "E", "messageId": f"fl-{n}"}
              for n in range(anonymous.MAX_PER_VISITOR + 5)]
    for at in range(0, len(events), 100):
        assert (await post(daemon, "/v1/batch", {"batch": events[at:at + 100]}))[0] == 200
    counts = (await daemon.ledger.stats()).counts
    assert counts[("outbound", "held")] == anonymous.MAX_PER_VISITOR
    assert counts[("outbound", "skipped")] == 5
    over = await daemon.ledger.get(OUT, f"fl-{anonymous.MAX_PER_VISITOR}")
    assert over is not None and "over the hold limit" in (over.reason or "")
    daemon.jobs.clock = lambda: datetime.now(UTC) + timedelta(hours=25)
    assert await daemon.jobs.expire_held() == anonymous.MAX_PER_VISITOR
    row = await daemon.ledger.get(OUT, "fl-0")
    assert row is not None and row.status is Status.SKIPPED and row.reason == "anonymous, never identified"


async def test_anonymous_events_batched_with_the_sign_up_are_released_by_it(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str]) -> None:
    """analytics.js often sends the pre-signup page views and the identify in one batch."""
    fake, _ = fake_iterable
    batch = [{"type": "track", "anonymousId": "same-batch", "event": "Pricing Viewed", "messageId": "sb-1"},
             {"type": "track", "anonymousId": "same-batch", "event": "Plan Chosen", "messageId": "sb-2"},
             {"type": "identify", "anonymousId": "same-batch", "userId": "sb-user", "messageId": "sb-3",
              "traits": {"email": "sb@example.com"}}]
    assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
    await wait_for(lambda: "sb-2" in fake.events, within=10)
    assert [e["eventName"] for e in fake.event_log if e.get("userId") == "sb-user"] == ["Pricing Viewed",
                                                                                       "Plan Chosen"]
    order = [e for e, body in fake.requests if '"sb-user"' in json.dumps(body)]
    assert order[0] in ("users/bulkUpdate", "users/update")  # after the identifying call
    assert {await status(daemon, k) for k in ("sb-1", "sb-2")} == {Status.SKIPPED}  # released, not left held


@pytest.mark.parametrize(("paths", "found"), [
    ({"user_id_paths": ("context.traits.user_id",)}, {"context": {"traits": {"user_id": "cu-9"}}}),
    ({"email_paths": ("context.traits.mail",)}, {"context": {"traits": {"mail": "cu9@example.com"}}}),
])
async def test_held_events_are_released_under_custom_identity_paths(
        stack_config: Config, ledger_url: str, fake_iterable: tuple[FakeIterable, str], paths: dict[str, Any],
        found: dict[str, Any]) -> None:
    """The identity that released a held event was written where Segment keeps it, not where
    ``[outbound.identity]`` reads: the released row was skipped for "no email or userId" (the event lost)."""
    from sync.mapping.rules import Identity

    fake, _ = fake_iterable
    mapping = replace(stack_config.outbound.mapping, identity=Identity(**paths))
    config = replace(stack_config, outbound=replace(stack_config.outbound, mapping=mapping))
    batch = [{"type": "track", "anonymousId": "cu-a1", "event": "Viewed", "messageId": "cu-h1"},
             {"type": "identify", "anonymousId": "cu-a1", "messageId": "cu-i1", "traits": {"name": "N"}, **found}]
    async with started(config, ledger_url) as daemon:
        assert (await post(daemon, "/v1/batch", {"batch": batch}))[0] == 200
        await wait_for(lambda: "cu-h1" in fake.events, within=10)
        assert await status(daemon, "cu-h1:released") is Status.DELIVERED
    sent = fake.events["cu-h1"]
    assert sent["eventName"] == "Viewed" and (sent.get("userId") == "cu-9" or sent.get("email") == "cu9@example.com")


@pytest.mark.parametrize("user_id", ["..", "."])
async def test_a_user_id_that_is_a_dot_segment_is_deleted_not_reported_done(
        daemon: Daemon, fake_iterable: tuple[FakeIterable, str], user_id: str) -> None:
    """`DELETE /api/users/byUserId/..` was normalised to `/api/users/` on the way out: a 404, which counts as a
    deletion done, and the user stayed in Iterable. The dots go percent-encoded and the path is sent as is."""
    fake, _ = fake_iterable
    fake.project.users.append({"email": "dots@example.com", "userId": user_id, "dataFields": {}})
    deletion = json.dumps({"type": "delete", "userId": user_id, "messageId": "dots-1"}).encode()
    assert (await post(daemon, "/segment/webhook", deletion, {"X-Signature": sign(deletion)}))[0] == 200
    await wait_for(lambda: status_is(daemon, "dots-1", Status.DELIVERED))
    await wait_for(lambda: fake.idle)
    assert fake.deletions == [{"userId": user_id}] and fake.find_user(user_id=user_id) is None


async def test_an_email_projects_identify_with_a_new_email_moves_the_profile_with_update_email(
        stack_config: Config, ledger_url: str) -> None:
    """SPEC section 5: in an email project the new email is given to the known profile with users/updateEmail,
    before the identify's update names it; one profile keeps its history. A change of case alone is none."""
    fake = FakeIterable(ITERABLE_KEY, **{**STRICT, "project_type": "email"})
    config = replace(stack_config, iterable=replace(stack_config.iterable, project_type="email"))
    first = {"userId": "e1", "messageId": "ec-1", "traits": {"email": "e1@example.com", "plan": "a"}}
    then = [{"userId": "e1", "messageId": "ec-2", "traits": {"email": "e1-new@example.com"}},
            {"userId": "e1", "messageId": "ec-3", "traits": {"email": "E1-New@Example.com", "seats": 3}}]
    async with serving(fake.app()) as iterable_url:
        config = replace(config, iterable=replace(config.iterable, base_url=iterable_url))
        async with started(config, ledger_url) as daemon:
            assert (await post(daemon, "/v1/identify", first))[0] == 200
            await wait_for(lambda: status_is(daemon, "ec-1", Status.DELIVERED))
            for event in then:
                assert (await post(daemon, "/v1/identify", event))[0] == 200
            await wait_for(lambda: _settled(daemon), within=20)
            await wait_for(lambda: fake.idle)
            change = await status(daemon, "ec-2:email")
    assert [(u["email"], u["userId"], u["dataFields"]) for u in fake.project.users] == \
        [("e1-new@example.com", "e1", {"plan": "a", "seats": 3})]
    assert fake.project.email_changes == [{"from": "e1@example.com", "to": "e1-new@example.com"}]
    calls = [(endpoint, body) for endpoint, body in fake.requests if endpoint.startswith("users/")]
    in_order = [endpoint for n, (endpoint, body) in enumerate(calls) if n == 0 or calls[n - 1] != (endpoint, body)]
    assert in_order == ["users/bulkUpdate", "users/updateEmail", "users/update", "users/update"]  # retries aside
    assert [body for endpoint, body in calls if endpoint == "users/updateEmail"][0] == \
        {"currentEmail": "e1@example.com", "newEmail": "e1-new@example.com"}
    assert change is Status.DELIVERED
