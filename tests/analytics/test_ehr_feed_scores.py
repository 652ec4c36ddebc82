"""The acceptance of LOINC-coded feeds: a bundle from an EHR-style feed (LOINC-coded Observations, no categories, a
transaction) is analysed by the breast-cancer and diabetes models to the same scores as the project-coded bundle of
the same values. Run eagerly against the real embedded ledger and TenSEAL."""

import numpy as np
import pytest

from analytics.diagnostic_models import breast_cancer_model, diabetes_model
from analytics.models import AnalysisStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_patients
from records.models import Patient
from records.services import patient_link_user, record_ingest
from tests.conftest import grant
from tests.records.factories import MRN_SYSTEM, UserFactory, ehr_transaction_bundle, encode, project_coded_bundle

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("model_name", "dataset", "category", "model"),
    [
        ("breast-cancer", BREAST_CANCER_DATASET, "imaging", breast_cancer_model),
        ("diabetes-progression", DIABETES_DATASET, "laboratory", diabetes_model),
    ],
)
def test_an_ehr_feeds_loinc_coded_bundle_scores_as_the_project_coded_bundle(
    model_name, dataset, category, model, clinician, models_registered, blob_dir, eager
):
    custodian = UserFactory(username="custodian", roles=[Role.CUSTODIAN])
    patients = demo_patients(dataset=dataset, count=4)
    record_ingest(raw_body=encode(ehr_transaction_bundle(patients)), actor=custodian)
    record_ingest(raw_body=encode(project_coded_bundle(patients)), actor=custodian)
    pairs = [
        (patient_pseudonym(f"{MRN_SYSTEM}|MRN-{demo.identifier}"), patient_pseudonym(demo.patient_key))
        for demo in patients
    ]
    for number, pseudonym in enumerate(p for pair in pairs for p in pair):
        user = UserFactory(username=f"patient-{number}", roles=[Role.PATIENT])
        patient = patient_link_user(patient=Patient.objects.get(pseudonym=pseudonym), user=user)
        grant(user, patient, clinician, purposes=[f"diagnostic-model:{model_name}"], categories=[category])

    request = analysis_request_create(
        requester=clinician,
        model_name=model_name,
        cohort_kind="explicit",
        pseudonyms=[p for pair in pairs for p in pair],
    )

    request.refresh_from_db()
    assert (request.status, request.total_records) == (AnalysisStatus.COMPLETED, 8)
    results = analysis_results(request=request, viewer=clinician)
    assert results.refusals == {}
    rows = {row.patient_pseudonym: row for row in results.rows}
    expected = model().interpret(model().score_plain(np.asarray([demo.features for demo in patients])))
    for (from_ehr, from_project), plain in zip(pairs, expected, strict=True):
        assert rows[from_ehr].label == rows[from_project].label == plain["label"]
        assert abs(rows[from_ehr].score - rows[from_project].score) < 1e-3
        assert abs(rows[from_ehr].score - plain["score"]) < 1e-3
