"""A patient's identifiers with their system (an MRN, a national id) are kept, as keyed hashes, and any one of them
names the patient at the next ingest; identifiers that name two patients already ingested are refused."""

import importlib

import pytest
from django.apps import apps

from records.crypto import patient_pseudonym
from records.errors import BundleRejected
from records.models import Patient, PatientIdentifier, RecordVersion
from records.selectors import patient_by_identifier
from records.services import record_ingest
from tests.records.factories import (
    MRN_SYSTEM,
    NATIONAL_ID_SYSTEM,
    ObservationResourceFactory,
    PatientResourceFactory,
    bundle,
    encode,
)

pytestmark = pytest.mark.django_db

backfill = importlib.import_module("records.migrations.0004_patient_identifier")


def _patient(*identifiers: tuple[str, str]) -> dict:
    patient = PatientResourceFactory()
    patient["identifier"] = [{"system": system, "value": value} for system, value in identifiers]
    return patient


def _ingest(patient: dict, category: str, custodian) -> str:
    observation = ObservationResourceFactory(patient=patient, category_code=category)
    if category == "imaging":
        observation["code"]["coding"][0]["code"] = "bc-mean-radius"
    result = record_ingest(raw_body=encode(bundle(patient, observation)), actor=custodian)
    (record,) = result.records
    return record.patient_pseudonym


def test_any_identifier_names_the_same_patient_at_a_later_ingest(custodian, ledger):
    first = _ingest(_patient((MRN_SYSTEM, "MRN-1"), (NATIONAL_ID_SYSTEM, "943 476 5919")), "laboratory", custodian)

    by_national_id = _ingest(_patient((NATIONAL_ID_SYSTEM, "943 476 5919")), "imaging", custodian)
    by_new_mrn_too = _ingest(
        _patient((NATIONAL_ID_SYSTEM, "943 476 5919"), (MRN_SYSTEM, "MRN-9")), "laboratory", custodian
    )
    by_the_new_mrn = _ingest(_patient((MRN_SYSTEM, "MRN-9")), "imaging", custodian)

    assert first == by_national_id == by_new_mrn_too == by_the_new_mrn == patient_pseudonym(f"{MRN_SYSTEM}|MRN-1")
    (patient,) = Patient.objects.all()
    assert {r.category for r in patient.records.all()} == {"laboratory", "imaging"}
    assert patient.identifiers.count() == 3  # MRN-1, the national id, MRN-9: hashes, never the values
    assert not PatientIdentifier.objects.filter(pseudonym__contains="MRN").exists()
    for system, value in ((MRN_SYSTEM, "MRN-1"), (NATIONAL_ID_SYSTEM, "943 476 5919"), (MRN_SYSTEM, "MRN-9")):
        assert patient_by_identifier(system=system, value=value) == patient
    assert patient_by_identifier(system=NATIONAL_ID_SYSTEM, value="MRN-1") is None  # the system is part of it


def test_identifiers_of_two_patients_in_one_resource_are_refused_and_nothing_is_stored(custodian, ledger):
    _ingest(_patient((MRN_SYSTEM, "MRN-A")), "laboratory", custodian)
    _ingest(_patient((NATIONAL_ID_SYSTEM, "111")), "laboratory", custodian)
    versions, height = RecordVersion.objects.count(), ledger.height()

    merged = _patient((MRN_SYSTEM, "MRN-A"), (NATIONAL_ID_SYSTEM, "111"))
    with pytest.raises(BundleRejected) as refused:
        record_ingest(raw_body=encode(bundle(merged, ObservationResourceFactory(patient=merged))), actor=custodian)

    assert (refused.value.code, refused.value.detail) == (
        "patient_identifier_conflict",
        {"entry": 0, "path": "resource.identifier"},
    )
    assert "MRN-A" not in refused.value.message
    assert (RecordVersion.objects.count(), ledger.height(), Patient.objects.count()) == (versions, height, 2)
    assert PatientIdentifier.objects.count() == 2


def test_the_api_answers_the_conflict_with_its_code(custodian, ledger):
    from tests.clients import api_as

    _ingest(_patient((MRN_SYSTEM, "MRN-A")), "laboratory", custodian)
    _ingest(_patient((MRN_SYSTEM, "MRN-B")), "laboratory", custodian)
    merged = _patient((MRN_SYSTEM, "MRN-A"), (MRN_SYSTEM, "MRN-B"))

    response = api_as(custodian).post(
        "/api/records/",
        encode(bundle(merged, ObservationResourceFactory(patient=merged))),
        content_type="application/fhir+json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "patient_identifier_conflict")


def test_patients_ingested_before_are_known_by_the_identifier_that_made_their_pseudonym(custodian, ledger):
    _ingest(_patient((MRN_SYSTEM, "MRN-OLD")), "laboratory", custodian)
    PatientIdentifier.objects.all().delete()  # as before this change

    backfill.identifiers_of_existing_patients(apps, None)

    assert patient_by_identifier(system=MRN_SYSTEM, value="MRN-OLD") == Patient.objects.get()
    assert _ingest(_patient((MRN_SYSTEM, "MRN-OLD")), "imaging", custodian) == Patient.objects.get().pseudonym
