"""Reading a model's features from a record's bundle (records.selectors.content_features), against a reference
that decodes the whole document and walks it as plain dicts and lists, and the code map it reads them by."""

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from health_platform.fhir_codes import LOINC
from records.codes import FEATURE_CODES, FEATURE_CODES_BY_CODE, FEATURE_SYSTEM
from records.selectors import content_features as features_of


def _bundle_with(values: dict[str, object], system: str | None = FEATURE_SYSTEM) -> bytes:
    """A bundle of one Observation per code, each coded (system, code); a code given as "system|code" says its own."""

    def coding(code: str) -> dict[str, str]:
        own_system, _, own_code = code.rpartition("|")
        coding = {"code": own_code}
        if own_system or system is not None:
            coding["system"] = own_system or str(system)
        return coding

    entries = [{"resource": {"resourceType": "Patient", "id": "p"}}] + [
        {
            "resource": {
                "resourceType": "Observation",
                "code": {"coding": [coding(code)]},
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


def test_a_feature_is_read_under_its_loinc_code_or_its_project_code_and_both_give_the_same_vector():
    codes = ("db-age", "db-sex", "db-bmi", "db-glu")  # db-sex has no LOINC code: it keeps the project's
    project = {"db-age": 59, "db-sex": 2, "db-bmi": 32.1, "db-glu": 87}
    loinc = {f"{LOINC}|30525-0": 59, "db-sex": 2, f"{LOINC}|39156-5": 32.1, f"{LOINC}|2345-7": 87}
    assert features_of(_bundle_with(project), codes) == [59.0, 2.0, 32.1, 87.0]
    assert features_of(_bundle_with(loinc), codes) == [59.0, 2.0, 32.1, 87.0]


def test_a_code_without_its_system_or_under_another_system_is_no_feature():
    codes = ("db-glu",)
    assert features_of(_bundle_with({"db-glu": 87}, system=None), codes) is None
    assert features_of(_bundle_with({"2345-7": 87}, system=None), codes) is None
    assert features_of(_bundle_with({"http://example.org/local|2345-7": 87}), codes) is None
    assert features_of(_bundle_with({f"{LOINC}|db-glu": 87}), codes) is None  # the project's code is not LOINC's
    assert features_of(_bundle_with({f"{FEATURE_SYSTEM}|2345-7": 87}), codes) is None  # nor the reverse


def test_the_code_map_gives_every_feature_one_coding_to_write_and_no_coding_to_two_features():
    written = [feature.coding for feature in FEATURE_CODES]
    recognised = [coding for feature in FEATURE_CODES for coding in feature.codings]
    assert len(set(written)) == len(written) == 40
    assert len(set(recognised)) == len(recognised)
    assert {system for system, _ in written} == {LOINC, FEATURE_SYSTEM}
    # LOINC where the dataset's unit is the LOINC term's; the FNA nucleus measurements have no LOINC code.
    assert {f.code: f.loinc for f in FEATURE_CODES if f.loinc} == {
        "db-age": "30525-0",
        "db-bmi": "39156-5",
        "db-bp": "8478-0",
        "db-tc": "2093-3",
        "db-ldl": "13457-7",
        "db-hdl": "2085-9",
        "db-glu": "2345-7",
    }
    assert FEATURE_CODES_BY_CODE["db-glu"].coding == (LOINC, "2345-7")
    assert FEATURE_CODES_BY_CODE["db-ltg"].coding == (FEATURE_SYSTEM, "db-ltg")


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
                        "code": {"coding": [{"system": FEATURE_SYSTEM, "code": c}]},
                        "valueQuantity": {"value": 1},
                    }
                }
                for c in (["a"], {"a": 1}, 7, None)
            ]
        }
    ).encode()
    assert features_of(document, ("a",)) is None


def _reference(plaintext: bytes, codes: tuple[str, ...]) -> list[float] | None:
    """The rule, over the fully decoded document: a coding is a wanted feature's when it is the feature's project code
    in the project's system, or its LOINC code (the code map's) in LOINC's."""
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
            system, code = coding.get("system"), coding.get("code")
            for wanted in codes:
                feature = FEATURE_CODES_BY_CODE.get(wanted)
                if (system, code) == (FEATURE_SYSTEM, wanted) or (
                    feature and feature.loinc and (system, code) == (LOINC, feature.loinc)
                ):
                    found[wanted] = number
    if len(found) != len(codes):
        return None
    return [found[code] for code in codes]


_CODES = ("db-glu", "db-bmi", "db-sex")  # two with a LOINC code, one without
_CODE_STRINGS = [*_CODES, "2345-7", "39156-5", "z", ""]
_SYSTEMS = [FEATURE_SYSTEM, LOINC, "", "http://example.org/local"]
_values = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
_codings = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "code": st.one_of(st.sampled_from(_CODE_STRINGS), st.integers(), st.none()),
            "system": st.one_of(st.sampled_from(_SYSTEMS), st.text(max_size=5), st.none()),
        },
    ),
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
        "code": st.fixed_dictionaries(
            {
                "coding": st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"system": st.just(FEATURE_SYSTEM), "code": st.sampled_from(_CODES)}),
                        st.fixed_dictionaries(
                            {"system": st.just(LOINC), "code": st.sampled_from(["2345-7", "39156-5"])}
                        ),
                    )
                )
            }
        ),
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
    for codes in (("db-glu",), ("db-sex", "db-glu"), _CODES):
        assert features_of(plaintext, codes) == _reference(plaintext, codes)


def test_the_generated_bundles_include_records_with_features():
    """The property above compares more than None with None."""
    found = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(_bundles)
    def collect(bundle):
        found.append(_reference(json.dumps(bundle).encode(), ("db-glu", "db-bmi")) is not None)

    collect()
    assert sum(found) >= 10
