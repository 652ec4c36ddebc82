"""The fast paths of reading JSON at ingest, held to the slow ones they stand for (property-based):

- records.bundles.json_value (orjson where it reads as json.loads does) against json.loads;
- the repeated-key check bundle_load_json makes (counted on the text where it can) against json.loads's
  object_pairs_hook;
- records.canonical.resource_canonical (told from the text) and record_canonical (from the resources' own forms)
  against canonical_json, itself held to the rfc8785 package by test_canonical.py.
"""

import json
import math
import random

import pytest
import rfc8785
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from records.bundles import bundle_load_json, json_value
from records.canonical import canonical_json, record_canonical, record_document, resource_canonical
from records.errors import BundleRejected
from tests.hostile.strategies import scalars_of_json, values_of_json

# Integers past 64 bits (which orjson reads as floats), every float, any text (lone surrogates too).
ANY_SCALARS = scalars_of_json(
    st.integers(min_value=-(2**70), max_value=2**70) | st.integers(min_value=-1000, max_value=1000),
    st.floats() | st.sampled_from([0.0, -0.0, 1.0, 17.0, 1e-4, 9.99e-5, 1e-7, 1e15, 1e16, 2.0**53, 1e21]),
    text_size=12,
) | st.sampled_from([":", ": x", '"', "\\", "\\u0041", "1e5", "v1.0", "\u00e9"])
ANY_VALUES = values_of_json(ANY_SCALARS, key_size=6, items=4, leaves=25)
SPELLINGS = st.fixed_dictionaries(
    {
        "separators": st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :  "), (",", ":\n")]),
        "ensure_ascii": st.booleans(),
        "indent": st.none() | st.just(1),
    }
)


def _typed(value):
    """`value` with every number tagged by its type and floats by their bits (1 == 1.0 and nan != nan otherwise)."""
    if isinstance(value, dict):
        return ("dict", [(key, _typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, value)


def _encoded(value, spelling) -> bytes:
    text = json.dumps(value, allow_nan=True, **spelling)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written as itself (ensure_ascii=False): not UTF-8 at all
        assume(False)
        raise


def _reading(read, raw: bytes):
    try:
        return _typed(read(raw))
    except ValueError as error:
        located = (error.lineno, error.colno) if isinstance(error, json.JSONDecodeError) else None
        return ("refused", located)


def _json_loads(raw: bytes):
    def refuse(_constant):
        raise ValueError("NaN and Infinity are not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


@settings(max_examples=1500, deadline=None)
@given(value=ANY_VALUES, spelling=SPELLINGS)
def test_json_value_reads_every_text_as_json_loads_does_to_the_type_and_bit(value, spelling):
    raw = _encoded(value, spelling)

    assert _reading(json_value, raw) == _reading(_json_loads, raw)


@settings(max_examples=300, deadline=None)
@given(value=ANY_VALUES, cut=st.integers(min_value=0, max_value=400), junk=st.sampled_from([b"", b"}", b",", b"x"]))
def test_json_value_refuses_a_broken_text_where_json_loads_does_with_its_line_and_column(value, cut, junk):
    raw = json.dumps(value).encode()
    broken = raw[: cut % (len(raw) + 1)] + junk
    assume(broken != raw)

    assert _reading(json_value, broken) == _reading(_json_loads, broken)


@pytest.mark.parametrize(
    "raw",
    [
        b"123456789012345678901234567890",  # past 64 bits: orjson would read a float
        b"[18446744073709551616, -9223372036854775809]",
        b'"\\ud800"',  # a lone surrogate escape: orjson refuses it, json.loads takes it
        b"1e400",  # orjson refuses it, json.loads reads infinity
        b"\xef\xbb\xbf{}",  # a byte order mark: refused by both
        b"NaN",
        b'{"a": Infinity}',
    ],
)
def test_json_value_hands_what_orjson_reads_otherwise_to_json_loads(raw):
    assert _reading(json_value, raw) == _reading(_json_loads, raw)


def _with_a_key_repeated(value, rng: random.Random):
    """The JSON text of `value` with one key of one of its objects written twice (None when it has no key)."""
    objects = []

    def collect(item):
        if isinstance(item, dict):
            if item:
                objects.append(item)
            for member in item.values():
                collect(member)
        elif isinstance(item, list):
            for member in item:
                collect(member)

    collect(value)
    if not objects:
        return None
    target = rng.choice(objects)
    key = rng.choice(list(target))
    marker = "\x00repeated\x00"
    target[marker] = None
    text = json.dumps(value)
    del target[marker]
    # The marker member becomes the key again, with another value: a repeated key json.loads would keep the last of.
    return text.replace(json.dumps(marker) + ": null", json.dumps(key) + ": 0", 1)


@settings(max_examples=1000, deadline=None)
@given(value=ANY_VALUES.filter(lambda v: isinstance(v, dict)), spelling=SPELLINGS, seed=st.integers())
def test_a_repeated_key_anywhere_is_refused_and_a_text_without_one_is_read_as_json_loads_reads_it(
    value, spelling, seed
):
    raw = _encoded(value, spelling)
    assume(b"NaN" not in raw and b"Infinity" not in raw)

    assert _typed(bundle_load_json(raw)) == _typed(_json_loads(raw))

    repeated = _with_a_key_repeated(value, random.Random(seed))
    assume(repeated is not None)
    with pytest.raises(BundleRejected) as refused:
        bundle_load_json(repeated.encode("utf-8", "surrogatepass"))
    assert refused.value.code == "malformed_json"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a" : 1, "a":2}',  # a key spaced from its colon
        b'{"b": ":", "a": 1, "a": 2}',  # a string beginning with a colon, counted like a key
        b'{"b": ":", "c": ":", "a": 1, "a": 2, "d": 1}',
        b'{"x": {"a\\"": 1, "a\\"": 2}}',  # escaped quotes in the key
        b'[{"a": 1}, {"b": {"c": 1, "c": 1}}]',
    ],
)
def test_each_spelling_of_a_repeated_key_is_refused(raw):
    with pytest.raises(BundleRejected) as refused:
        bundle_load_json(raw)
    assert refused.value.code == "malformed_json"


def _canonical_or_refusal(value):
    try:
        return canonical_json(value)
    except rfc8785.CanonicalizationError as error:
        return type(error)


def _resource_canonical_or_refusal(raw: bytes, value):
    try:
        return resource_canonical(raw, value)
    except rfc8785.CanonicalizationError as error:
        return type(error)


NUMBER_SPELLINGS = st.sampled_from(["17.0", "17.00", "-0.0", "0.0001", "0.00001", "1.50", "1E2", "1e-5", "3.0e1"])


@settings(max_examples=1500, deadline=None)
@given(value=ANY_VALUES, spelling=SPELLINGS, number=NUMBER_SPELLINGS)
def test_a_resources_canonical_form_told_from_its_text_is_canonical_jsons(value, spelling, number):
    raw = _encoded([value, "marker"], spelling).replace(b'"marker"', number.encode())
    assume(b"NaN" not in raw and b"Infinity" not in raw)
    parsed = _json_loads(raw)

    assert _resource_canonical_or_refusal(raw, parsed) == _canonical_or_refusal(parsed)


OBSERVATIONS = st.lists(
    st.fixed_dictionaries(
        {"resourceType": st.just("Observation"), "value": ANY_VALUES},
        optional={"id": st.sampled_from(["a", "b", "c", "o-1", "\u00e9"]) | st.integers(0, 3)},
    ),
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(observations=OBSERVATIONS, patient=ANY_VALUES.filter(lambda v: isinstance(v, dict)))
def test_a_records_canonical_form_from_its_resources_is_that_of_its_document(observations, patient):
    try:
        expected = canonical_json(record_document(patient=patient, observations=observations))
    except rfc8785.CanonicalizationError:
        assume(False)
        raise

    built = record_canonical(
        patient=canonical_json(patient),
        observations=[(str(observation.get("id", "")), canonical_json(observation)) for observation in observations],
    )

    assert built == expected
