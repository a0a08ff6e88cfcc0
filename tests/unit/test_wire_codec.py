"""The fast JSON paths (``wire.stored_loads``, ``wire.compact``) read and write what Python's ``json`` does.

A ledger row written by ``json.dumps`` (SQLAlchemy's default serializer) must read back as the same value
through msgspec, including what msgspec alone refuses; a request body must carry the same value as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.wire import compact, stored_loads

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


def _same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 and 0.0 told apart and an int never equal to a float."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_a_stored_value_reads_back_as_pythons_json_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)  # as the ledger's engine writes a JSON column
    assert _same(stored_loads(text), json.loads(text))
    assert _same(stored_loads(text.encode()), json.loads(text))


@pytest.mark.parametrize("text", [
    '{"a": NaN}', '{"a": Infinity}', '[-Infinity]',  # Python's json writes these for non-finite floats
    '{"name": "\\ud800"}',  # an unpaired surrogate, escaped (an inbound value sent on escaped)
    '{"n": 1e400}',  # beyond a float: Python's json reads infinity
])
def test_what_msgspec_refuses_is_read_as_pythons_json_reads_it(text: str) -> None:
    expected, got = json.loads(text), stored_loads(text)
    assert json.dumps(got) == json.dumps(expected)


def test_a_malformed_column_still_fails_loudly() -> None:
    with pytest.raises(ValueError):
        stored_loads('{"a": ')


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_a_request_body_carries_the_value_pythons_json_would(value: Any) -> None:
    body = compact(value)
    assert _same(json.loads(body), value)  # (not always as short: msgspec writes 1e-05 as 0.00001; the sink
    # measures a bulk request by these bytes themselves)


def test_a_body_that_cannot_be_sent_raises_what_the_sink_sets_aside() -> None:
    from sync.iterable.sink import UNSENDABLE

    with pytest.raises(UNSENDABLE):
        compact({"name": "\ud800"})
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(UNSENDABLE):
        compact(deep)


def test_a_non_finite_float_goes_out_as_null_not_as_invalid_json() -> None:
    assert compact({"a": math.nan, "b": math.inf}) == b'{"a":null,"b":null}'
