"""Bundles as other systems send them: LOINC-coded Observations with no category, in transaction, batch or
collection bundles, Patients known by several identifiers with their systems."""

import pytest

from analytics.diagnostic_models import breast_cancer_model, diabetes_model
from health_platform.fhir_codes import LOINC
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET, FEATURE_SYSTEM
from records.crypto import patient_pseudonym
from records.demo import demo_patients
from records.models import Record
from records.selectors import content_features as features_of
from records.selectors import record_version_plaintext
from records.services import record_ingest
from tests.records.factories import (
    MRN_SYSTEM,
    UserFactory,
    ehr_transaction_bundle,
    encode,
    project_coded_bundle,
)

pytestmark = pytest.mark.django_db


def _features(pseudonym: str, category: str, codes: tuple[str, ...]) -> list[float] | None:
    record = Record.objects.get(patient__pseudonym=pseudonym, category=category)
    return features_of(record_version_plaintext(record_version=record.latest_version), codes)


@pytest.mark.parametrize(
    ("dataset", "category", "model"),
    [(BREAST_CANCER_DATASET, "imaging", breast_cancer_model), (DIABETES_DATASET, "laboratory", diabetes_model)],
)
def test_a_loinc_coded_transaction_without_categories_gives_the_project_coded_bundles_feature_vectors(
    dataset, category, model, ledger
):
    custodian = UserFactory(username="custodian")
    patients = demo_patients(dataset=dataset, count=3)

    ehr = record_ingest(raw_body=encode(ehr_transaction_bundle(patients)), actor=custodian)
    project = record_ingest(raw_body=encode(project_coded_bundle(patients)), actor=custodian)

    assert [r.category for r in ehr.records] == [category] * 3  # filed by the code map: no category was sent
    assert ehr.all_anchored
    assert project.all_anchored
    codes = model().feature_codes
    for patient in patients:
        from_ehr = _features(patient_pseudonym(f"{MRN_SYSTEM}|MRN-{patient.identifier}"), category, codes)
        from_project = _features(patient_pseudonym(patient.patient_key), category, codes)
        assert from_ehr == from_project == list(patient.features)


def test_the_ehr_feed_really_is_loinc_coded_where_the_map_has_loinc():
    (patient,) = demo_patients(dataset=DIABETES_DATASET, count=1)
    document = ehr_transaction_bundle([patient])
    systems = [
        coding["system"]
        for entry in document["entry"]
        if entry["resource"]["resourceType"] == "Observation"
        for coding in entry["resource"]["code"]["coding"]
    ]
    assert systems.count(LOINC) == 7
    assert systems.count(FEATURE_SYSTEM) == 3
    assert not any("category" in entry["resource"] for entry in document["entry"])


@pytest.mark.parametrize("bundle_type", ["batch", "collection"])
def test_transaction_batch_and_collection_bundles_of_one_content_make_the_same_record(bundle_type, ledger):
    custodian = UserFactory(username="custodian")
    patients = demo_patients(dataset=DIABETES_DATASET, count=2)

    first = record_ingest(raw_body=encode(ehr_transaction_bundle(patients)), actor=custodian)
    again = record_ingest(raw_body=encode(ehr_transaction_bundle(patients, bundle_type=bundle_type)), actor=custodian)

    assert [r.sha256 for r in again.records] == [r.sha256 for r in first.records]
    assert all(r.unchanged for r in again.records)
