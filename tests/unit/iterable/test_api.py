"""The Iterable catalogue: one list of event type names and one rule for retryable statuses."""

from __future__ import annotations

import pytest

from sync.iterable import api


@pytest.mark.parametrize(("status", "again"), [
    (408, True), (425, True), (429, True), (500, True), (502, True), (503, True), (504, True), (599, True),
    (400, False), (401, False), (404, False), (409, False), (413, False), (422, False)])
def test_which_statuses_are_worth_sending_again(status: int, again: bool) -> None:
    assert api.retryable(status) is again


def test_the_mapping_and_the_export_read_one_list_of_event_types() -> None:
    from sync.inbound.export import EXPORT_TYPES
    from sync.mapping.reading import INBOUND_NAMES

    assert INBOUND_NAMES is api.EVENT_TYPES and api.EVENT_TYPES < EXPORT_TYPES
    assert {"emailOpen", "pushSend", "inAppOpen", "webPushClick", "smsSend"} <= api.EVENT_TYPES
    assert EXPORT_TYPES - api.EVENT_TYPES == {"purchase", "customEvent", "user", "unknownSession"}
