"""Reading a model's features from a record's bundle (analytics.features), against a reference that
decodes the whole document and walks it as plain dicts and lists."""

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.features import features_of


def _bundle_with(values: dict[str, object]) -> bytes:
    entries = [{"resource": {"resourceType": "Patient", "id": "p"}}] + [
        {
            "resource": {
                "resourceType": "Observation",
                "code": {"coding": [{"code": code}]},
                "valueQuantity": {"value": value},
            }
        }
        for code, value in values.items()
    ]
    return json.dumps({"resourceType": "Bundle", "entry": entries}).encode()


def test_features_are_read_in_the_models_order_and_a_record_missing_one_is_not_scored():
    codes = ("a", "b", "c")
    assert features_of(_bundle_with({"c": 3, "a": 1.5, "b": 2}), codes) == [1.5, 2.0, 3.0]
    assert features_of(_bundle_with({"a": 1, "b": 2}), codes) is None  # missing c
    assert features_of(_bundle_with({"a": 1, "b": 2, "c": True}), codes) is None  # a boolean is not a measurement
    assert features_of(_bundle_with({"a": 1, "b": 2, "c": "3"}), codes) is None  # nor is a string
    assert features_of(_bundle_with({"a": 1, "b": 2, "c": None}), codes) is None
    assert features_of(_bundle_with({"a": 1, "b": 2, "c": float("nan")}), codes) is None  # NaN is not JSON
    assert features_of(_bundle_with({"a": 1, "b": 2, "c": 10**400}), codes) is None  # beyond any float


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"not json",
        b'{"entry": ',  # truncated
        b"[]",
        b'{"entry": {}}',  # entry is not a list
        b'{"entry": [1]}',  # an entry that is not an object
        b'{"entry": [{"resource": []}]}',
        b'{"entry": [{"resource": {"resourceType": "Observation", "code": {"coding": {}}}}]}',
        b'{"entry": [{"resource": {"resourceType": "Observation", "valueQuantity": 3}}]}',
        '{"entry": [{"resource": {"resourceType": "Observation", "code": {"coding": [{"code": "a"}]}, '
        '"valueQuantity": {"value": 1}}]} \udc80'.encode(errors="surrogatepass"),  # not UTF-8
    ],
)
def test_damaged_content_has_no_features_and_raises_nothing(document):
    assert features_of(document, ("a",)) is None


def test_a_code_that_is_not_a_string_is_not_a_feature():
    document = json.dumps(
        {
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "code": {"coding": [{"code": c}]},
                        "valueQuantity": {"value": 1},
                    }
                }
                for c in (["a"], {"a": 1}, 7, None)
            ]
        }
    ).encode()
    assert features_of(document, ("a",)) is None


def _reference(plaintext: bytes, codes: tuple[str, ...]) -> list[float] | None:
    """The rule, over the fully decoded document (the implementation before the schema decoder)."""
    document = json.loads(plaintext)
    found: dict[str, float] = {}
    for entry in document.get("entry", ()):
        resource = entry.get("resource")
        if not resource or resource.get("resourceType") != "Observation":
            continue
        quantity = resource.get("valueQuantity")
        value: Any = quantity.get("value") if quantity else None
        if type(value) not in (int, float) or resource.get("code") is None:
            continue
        try:
            number = float(value)
        except OverflowError:
            continue
        if not math.isfinite(number):
            continue
        for coding in resource["code"].get("coding", ()):
            code = coding.get("code")
            if type(code) is str and code in codes:
                found[code] = number
    if len(found) != len(codes):
        return None
    return [found[code] for code in codes]


_CODES = ("a", "b", "c")
_values = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
_codings = st.lists(
    st.fixed_dictionaries({}, optional={"code": st.sampled_from([*_CODES, "z", ""]), "system": st.text(max_size=5)}),
    max_size=3,
)
_resources = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Observation", "Patient", "Condition"])},
    optional={
        "code": st.fixed_dictionaries({}, optional={"coding": _codings, "text": st.text(max_size=5)}),
        "valueQuantity": st.fixed_dictionaries({}, optional={"value": _values, "unit": st.text(max_size=4)}),
        "status": st.just("final"),
        "note": st.lists(st.fixed_dictionaries({"text": st.text(max_size=10)}), max_size=2),
    },
)
_measurements = st.fixed_dictionaries(  # well-formed, so that features are found (or, not Observations, must not be)
    {
        "resourceType": st.sampled_from(["Observation", "Observation", "Condition"]),
        "code": st.fixed_dictionaries({"coding": st.lists(st.fixed_dictionaries({"code": st.sampled_from(_CODES)}))}),
        "valueQuantity": st.fixed_dictionaries(
            {"value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())}
        ),
    }
)
_bundles = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle")},
    optional={
        "entry": st.lists(
            st.fixed_dictionaries({}, optional={"resource": st.one_of(_measurements, _resources)}), max_size=10
        )
    },
)


@settings(max_examples=400, deadline=None)
@given(_bundles)
def test_the_schema_decoder_reads_exactly_what_the_whole_document_holds(bundle):
    plaintext = json.dumps(bundle).encode()
    for codes in (("a",), ("b", "a"), _CODES):
        assert features_of(plaintext, codes) == _reference(plaintext, codes)


def test_the_generated_bundles_include_records_with_features():
    """The property above compares more than None with None."""
    found = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(_bundles)
    def collect(bundle):
        found.append(_reference(json.dumps(bundle).encode(), ("a",)) is not None)

    collect()
    assert sum(found) >= 20
