"""Canonical hashing: independent of key order, whitespace and entry order (property-based)."""

import json
import random

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from records.canonical import canonical_json, canonical_sha256, record_document
from tests.hostile.strategies import scalars_of_json, values_of_json

JSON_SCALARS = scalars_of_json(
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text_size=20,
)
JSON_VALUES = values_of_json(JSON_SCALARS, key_size=10, items=5, leaves=30)


def _shuffled(value, rng: random.Random):
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@settings(max_examples=300, deadline=None)
@given(
    value=JSON_VALUES,
    seed=st.integers(),
    indent=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :  ")]),
    ensure_ascii=st.booleans(),
)
def test_canonical_hash_is_stable_under_key_reordering_and_whitespace(value, seed, indent, separators, ensure_ascii):
    respelled = json.dumps(
        _shuffled(value, random.Random(seed)), indent=indent, separators=separators, ensure_ascii=ensure_ascii
    )

    assert canonical_sha256(json.loads(respelled)) == canonical_sha256(value)
    assert canonical_json(json.loads(respelled)) == canonical_json(value)


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True), seed=st.integers())
def test_record_document_does_not_depend_on_the_order_of_observations(ids, seed):
    observations = [{"resourceType": "Observation", "id": observation_id} for observation_id in ids]
    shuffled = observations[:]
    random.Random(seed).shuffle(shuffled)
    patient = {"resourceType": "Patient", "id": "p"}

    document = record_document(patient=patient, observations=shuffled)

    assert canonical_sha256(document) == canonical_sha256(record_document(patient=patient, observations=observations))
    assert [entry["resource"]["id"] for entry in document["entry"][1:]] == sorted(ids)


def test_canonical_form_follows_rfc_8785():
    assert canonical_json({"b": [1.0, 1e21, 0.1], "a": "\u20ac", "c": {"z": True, "y": None}}) == (
        '{"a":"\u20ac","b":[1,1e+21,0.1],"c":{"y":null,"z":true}}'.encode()
    )


# Past 2^53, NaN, infinities, every float and any text (lone surrogates too): what the orjson path must hand on.
ANY_SCALARS = scalars_of_json(st.integers(min_value=-(2**60), max_value=2**60), st.floats(), text_size=20)
ANY_VALUES = values_of_json(ANY_SCALARS, key_size=10, items=5, leaves=30)


def _rfc8785_or_refusal(value):
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        return type(error)


def _canonical_or_refusal(value):
    try:
        return canonical_json(value)
    except rfc8785.CanonicalizationError as error:
        return type(error)


@settings(max_examples=1500, deadline=None)
@given(value=ANY_VALUES)
def test_canonical_form_is_the_rfc8785_packages_byte_for_byte_and_refuses_what_it_refuses(value):
    assert _canonical_or_refusal(value) == _rfc8785_or_refusal(value)


@settings(max_examples=1500, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.floats(min_value=1e-4, max_value=1e16))
def test_canonical_form_of_a_float_is_the_rfc8785_packages(value):
    assert canonical_json([value, -value]) == rfc8785.dumps([value, -value])
