"""The platform's purposes as standard codes and back (health_platform.fhir_codes)."""

import pytest

from health_platform.fhir_codes import (
    DUO,
    PURPOSE_SYSTEM,
    V3_ACT_REASON,
    PurposeUnmapped,
    access_purpose_from_codings,
    purpose_codings,
    purpose_from_codings,
    purposes_codings,
    purposes_from_codings,
)


@pytest.mark.parametrize(
    "purpose", ["treatment", "research", "diagnostic-model:breast-cancer", "training:breast-cancer"]
)
def test_each_purpose_is_read_back_from_its_codings(purpose):
    assert purpose_from_codings(purpose_codings(purpose)) == purpose


@pytest.mark.parametrize(
    ("codings", "purpose"),
    [
        ([{"system": V3_ACT_REASON, "code": "TREAT"}], "treatment"),
        ([{"system": V3_ACT_REASON, "code": "HRESCH"}], "research"),
        ([{"system": DUO, "code": "DUO:0000042"}], "research"),
        (
            [{"system": DUO, "code": "DUO:0000007"}, {"system": PURPOSE_SYSTEM, "code": "diagnostic-model:x"}],
            "diagnostic-model:x",
        ),
    ],
)
def test_standard_codes_alone_name_a_purpose(codings, purpose):
    assert purpose_from_codings(codings) == purpose


@pytest.mark.parametrize(
    "codings",
    [
        [],
        [{"system": V3_ACT_REASON, "code": "ETREAT"}],  # emergency treatment: no grant stands for it
        [{"system": DUO, "code": "DUO:0000007"}],  # disease-specific, but which model family?
        [{"system": V3_ACT_REASON, "code": "TREAT"}, {"system": V3_ACT_REASON, "code": "HRESCH"}],
        [{"system": PURPOSE_SYSTEM, "code": "marketing"}],
        [{"system": "http://example.org", "code": "TREAT"}],
    ],
)
def test_codes_with_no_single_equivalent_are_refused_with_a_reason(codings):
    with pytest.raises(PurposeUnmapped) as refused:
        purpose_from_codings(codings)
    assert refused.value.reason


def test_audit_is_health_compliance_and_unknown_purposes_are_a_programming_error():
    assert purpose_codings("audit") == [{"system": V3_ACT_REASON, "code": "HCOMPL", "display": "health compliance"}]
    with pytest.raises(ValueError, match="not a purpose"):
        purpose_codings("marketing")


def test_a_patients_own_download_is_patient_requested_and_reads_back():
    codings = purpose_codings("patient-request")
    assert codings == [{"system": V3_ACT_REASON, "code": "PATRQT", "display": "patient requested"}]
    assert access_purpose_from_codings(codings) == "patient-request"
    with pytest.raises(PurposeUnmapped):
        purpose_from_codings(codings)  # no consent is granted for it


@pytest.mark.parametrize(
    "purposes",
    [
        ["treatment"],
        ["research"],
        ["diagnostic-model:breast-cancer"],
        ["diagnostic-model:breast-cancer", "research"],
        ["diagnostic-model:breast-cancer", "treatment"],
        ["diagnostic-model:breast-cancer", "diagnostic-model:diabetes", "research", "treatment"],
        ["training:breast-cancer"],
        ["research", "training:breast-cancer"],
        ["diagnostic-model:breast-cancer", "training:breast-cancer", "training:diabetes"],
    ],
)
def test_several_purposes_are_read_back_from_one_list_of_codings(purposes):
    codings = purposes_codings(purposes)
    assert len(codings) == len({(c["system"], c["code"]) for c in codings})  # each coding once
    assert purposes_from_codings(codings) == purposes


def test_hresch_beside_a_model_family_is_the_familys_and_alone_is_research():
    family = {"system": PURPOSE_SYSTEM, "code": "diagnostic-model:x"}
    hresch = {"system": V3_ACT_REASON, "code": "HRESCH"}
    assert purposes_from_codings([hresch, family]) == ["diagnostic-model:x"]
    assert purposes_from_codings([hresch]) == ["research"]


def test_training_a_family_is_disease_specific_research_told_from_running_the_model_by_its_own_code():
    codings = purpose_codings("training:breast-cancer")
    assert [(c["system"], c["code"]) for c in codings] == [
        (V3_ACT_REASON, "HRESCH"),
        (DUO, "DUO:0000007"),
        (PURPOSE_SYSTEM, "training:breast-cancer"),
    ]
    hresch = {"system": V3_ACT_REASON, "code": "HRESCH"}
    assert purposes_from_codings([hresch, codings[2]]) == ["training:breast-cancer"]
    assert purpose_codings("diagnostic-model:breast-cancer")[:2] == codings[:2]
    with pytest.raises(ValueError, match="not a purpose"):
        purpose_codings("training:Not A Family")


def test_a_coding_of_a_list_with_no_equivalent_is_refused_with_its_index():
    with pytest.raises(PurposeUnmapped) as refused:
        purposes_from_codings([{"system": V3_ACT_REASON, "code": "TREAT"}, {"system": DUO, "code": "DUO:0000007"}])
    assert refused.value.index == 1


@pytest.mark.parametrize("system", [V3_ACT_REASON, DUO, PURPOSE_SYSTEM, "http://example.org/Alice-Smith"])
def test_a_reason_never_repeats_a_code_it_was_sent(system):
    with pytest.raises(PurposeUnmapped) as refused:
        purpose_from_codings([{"system": system, "code": "Alice-Smith-diabetic"}])
    assert "Alice" not in refused.value.reason


def test_an_access_events_purpose_reads_health_compliance_as_the_audit_and_the_rest_as_consents_do():
    for purpose in ("audit", "treatment", "research", "diagnostic-model:breast-cancer"):
        assert access_purpose_from_codings(purpose_codings(purpose)) == purpose
    with pytest.raises(PurposeUnmapped):  # no consent grants an audit
        purpose_from_codings(purpose_codings("audit"))
    with pytest.raises(PurposeUnmapped, match="alone"):
        access_purpose_from_codings([*purpose_codings("audit"), *purpose_codings("treatment")])
