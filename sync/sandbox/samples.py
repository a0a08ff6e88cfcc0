"""Sample payloads: Iterable's documented system-webhook examples and a few Segment events.

The email and push webhooks are Iterable's own doc examples (values verbatim); SMS, in-app and
web-push ones follow the field lists of the same documentation.
"""

from __future__ import annotations

from typing import Any

_CAMPAIGN = {"campaignName": "My campaign name", "workflowId": None, "workflowName": None,
             "templateName": "My template name", "experimentId": None}

ITERABLE_WEBHOOKS: list[dict[str, Any]] = [
    {"email": "docs@iterable.com", "eventName": "emailSend", "dataFields": {
        "contentId": 331201, "email": "docs@iterable.com", "createdAt": "2016-12-02 20:21:04 +00:00",
        "campaignId": 59667, "templateId": 93849, "messageId": "d0aa7801f91f4824997a631f3ed583c3",
        "emailSubject": "My subject", **_CAMPAIGN, "channelId": 3420, "messageTypeId": 3866,
        "emailId": "c59667:t93849:docs@iterable.com"}},
    {"email": "docs@iterable.com", "eventName": "emailOpen", "dataFields": {
        "userAgent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "proxySource": "Gmail", "ip": "66.249.84.204", "templateId": 79190, "device": "Gmail",
        "email": "docs@iterable.com", "createdAt": "2016-12-02 18:51:45 +00:00", "campaignId": 49313,
        "messageId": "210badf49fe54f2591d64ad0d055f4fb", "emailSubject": "My subject", **_CAMPAIGN,
        "channelId": 3420, "messageTypeId": 3866, "emailId": "c49313:t79190:docs@iterable.com"}},
    {"email": "docs@iterable.com", "eventName": "emailClick", "dataFields": {
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_1) Chrome/54.0.2840.98 Safari/537.36",
        "ip": "162.245.22.184", "templateId": 93849, "userAgentDevice": "Mac", "url": "https://www.iterable.com",
        "canonicalUrlId": "3145668988", "city": "San Francisco", "region": "CA", "email": "docs@iterable.com",
        "createdAt": "2016-12-02 20:31:39 +00:00", "campaignId": 59667,
        "messageId": "d0aa7801f91f4824997a631f3ed583c3", "emailSubject": "My subject", **_CAMPAIGN,
        "channelId": 3420, "messageTypeId": 3866, "linkUrl": "https://www.iterable.com", "linkId": "3145668988",
        "emailId": "c59667:t93849:docs@iterable.com"}},
    {"email": "invalid_email@iterable.com", "eventName": "emailBounce", "dataFields": {
        "emailSubject": "My subject", **_CAMPAIGN, "channelId": 2598, "messageTypeId": 2870,
        "recipientState": "HardBounce", "templateId": 167484, "email": "invalid_email@iterable.com",
        "createdAt": "2017-05-15 23:59:47 +00:00", "campaignId": 114746,
        "messageId": "d0aa7801f91f4824997a631f3ed583c3", "emailId": "c114746:t167484:invalid_email@iterable.com"}},
    {"email": "docs@iterable.com", "eventName": "pushSend", "dataFields": {
        "contentId": 6724, "platformEndpoint": "<Platform endpoint>", "email": "docs@iterable.com",
        "createdAt": "2016-12-08 00:53:11 +00:00", "campaignId": 74758, "templateId": 113541,
        "messageId": "73f2d3f13cd04db0b56c6143b179adc5", "pushMessage": "Push message text", **_CAMPAIGN,
        "channelId": 1744, "messageTypeId": 1759, "payload": {"a": "2"}, "sound": "", "badge": "",
        "contentAvailable": False, "deeplink": None, "locale": None}},
    {"email": "docs@iterable.com", "eventName": "pushOpen", "dataFields": {
        "appAlreadyRunning": False, "email": "docs@iterable.com", "createdAt": "2016-12-08 01:25:22 +00:00",
        "campaignId": 74768, "templateId": 113554, "pushMessage": "Push message text", **_CAMPAIGN,
        "channelId": 2203, "messageTypeId": 2439, "payload": {"path": "shop_home"}, "sound": None, "badge": None,
        "contentAvailable": False, "deeplink": None, "locale": None}},
    {"email": "docs@iterable.com", "eventName": "pushUninstall", "dataFields": {
        "isGhostPush": False, "platformEndpoint": "<Platform endpoint>", "email": "docs@iterable.com",
        "createdAt": "2016-12-09 20:50:54 +00:00", "campaignId": 74768, "templateId": 113554,
        "messageId": "73f2d3f13cd04db0b56c6143b179adc5", "pushMessage": "Push message text", **_CAMPAIGN,
        "channelId": 2203, "messageTypeId": 2439, "payload": {"path": "your_folder/30"}, "sound": "",
        "badge": None, "contentAvailable": False, "deeplink": None, "locale": None}},
    {"email": "docs@iterable.com", "userId": "docs-user", "eventName": "smsSend", "dataFields": {
        "email": "docs@iterable.com", "createdAt": "2016-12-05 22:51:25 +00:00", "campaignId": 74750,
        "templateId": 113541, "messageId": "73f2d3f13cd04db0b56c6143b179adc5", "smsMessage": "Message text",
        "toPhoneNumber": "+16503924234", "fromSMSSenderId": 258, "contentId": 2086, **_CAMPAIGN,
        "channelId": 4270, "messageTypeId": 4769, "locale": None}},
    {"email": "docs@iterable.com", "eventName": "smsReceived", "dataFields": {
        "fromPhoneNumber": "+16503924234", "toPhoneNumber": "+14155551234", "smsMessage": "STOP",
        "email": "docs@iterable.com", "createdAt": "2016-12-05 22:51:25 +00:00"}},
    {"email": "docs@iterable.com", "eventName": "inAppSend", "dataFields": {
        "email": "docs@iterable.com", "createdAt": "2018-03-27 00:44:40 +00:00", "campaignId": 82444,
        "templateId": 122721, "messageId": "7f7c5b0f7a0d4ec9b4a5a4ad4b5bc5c5", "expiresAt": "2018-06-25 00:44:30 +00:00",
        "inAppBody": "", "messageContext": {"saveToInbox": False, "trigger": "immediate"}, **_CAMPAIGN,
        "channelId": 2634, "messageTypeId": 3085, "labels": [], "locale": None}},
    {"email": "docs@iterable.com", "eventName": "inAppOpen", "dataFields": {
        "email": "docs@iterable.com", "createdAt": "2018-03-27 00:44:40 +00:00", "campaignId": 82444}},
    {"email": "docs@iterable.com", "eventName": "webPushSend", "dataFields": {
        "email": "docs@iterable.com", "createdAt": "2019-08-07 18:56:10 +00:00", "campaignId": 680074,
        "templateId": 933385, "messageId": "2c780bf42f26485db0fc6571d2e0f6a0", "browserToken": "fake-token",
        "webPushBody": None, "webPushMessage": "", "webPushIcon": "", "webPushClickAction": None, **_CAMPAIGN,
        "channelId": 3866, "messageTypeId": 4417}},
]

SEGMENT_EVENTS: list[dict[str, Any]] = [
    {"type": "identify", "userId": "user-1", "traits": {"email": "ann@example.com", "name": "Ann",
                                                        "plan": "pro", "createdAt": "2026-01-05T10:00:00Z"}},
    {"type": "track", "userId": "user-1", "event": "Song Played",
     "properties": {"title": "Blue", "playedAt": "2026-01-05T10:03:00Z"}},
    {"type": "page", "userId": "user-1", "name": "Pricing", "properties": {"path": "/pricing"}},
    {"type": "track", "userId": "user-1", "event": "Cart Updated",
     "properties": {"products": [{"product_id": "sku-1", "name": "Shoe", "price": 50, "quantity": 1}]}},
    {"type": "track", "userId": "user-1", "event": "Order Completed",
     "properties": {"order_id": "order-1", "total": 50, "products": [
         {"product_id": "sku-1", "name": "Shoe", "price": 50, "quantity": 1}]}},
    {"type": "group", "userId": "user-1", "groupId": "acme"},
]
