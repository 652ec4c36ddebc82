"""chaincode.state's encoding: the state bytes must not change with the JSON library that writes them.

Stored values are compared byte for byte by endorsing peers and, for an identical re-append, with
what is already stored; orjson replaced json.dumps as the writer, so it must write the same bytes.
"""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode import state, validation
from chaincode.errors import InvalidArgument

# What contracts store: strings, 64-bit integers, booleans, null, lists and objects (no floats).
_LEAVES = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text()
VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=25)


def json_dumps(value) -> bytes:
    """The encoding the state was written with before orjson."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=600, deadline=None)
@given(VALUES)
def test_dumps_writes_what_json_dumps_wrote(value):
    try:
        expected = json_dumps(value)
    except UnicodeEncodeError:  # a lone surrogate: neither writer can store it
        with pytest.raises(orjson.JSONEncodeError):
            state.dumps(value)
        return
    assert state.dumps(value) == expected


def test_dumps_refuses_an_integer_it_could_not_read_back_as_one():
    with pytest.raises(TypeError):  # orjson.JSONEncodeError; orjson.loads would give a float
        state.dumps({"big": 2**80})


def test_dumps_writes_non_ascii_and_control_characters_as_json_dumps_did():
    assert state.dumps({"b": "\u00e9\x7f\n\u2028", "a": [True, None]}) == json_dumps(
        {"b": "\u00e9\x7f\n\u2028", "a": [True, None]}
    )


@settings(max_examples=1000, deadline=None)
@given(VALUES)
def test_stored_values_read_back_unchanged(value):
    try:
        raw = state.dumps(value)
    except orjson.JSONEncodeError:  # a lone surrogate
        return
    assert orjson.loads(raw) == json.loads(raw) == value


@pytest.mark.parametrize(
    "text",
    ['{"a": NaN}', '{"a": Infinity}', '{"a": "\\ud800"}', "[" * 2000 + "]" * 2000, '{"a": 1', "", "nul"],
)
def test_a_json_argument_that_is_not_strict_json_is_refused(text):
    with pytest.raises(InvalidArgument, match="request"):
        validation.json_argument(text, "request", dict)
