from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Consent
from consent.services import consent_grant
from tests.clients import api_as
from tests.conftest import BREAST_CANCER, consent_api_body

URL = "/api/consents/"


def test_patient_grants_through_the_api_and_gets_the_transaction(patient_user, terms, ledger):
    response = api_as(patient_user).post(URL, consent_api_body(terms), format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["patient_pseudonym"] == patient_user.patient.pseudonym
    assert body["effective_status"] == "active"
    assert ledger.locate(body["granted_tx_id"]).block_number == body["granted_block"]


def test_patient_revokes_through_the_api(patient_user, terms, ledger):
    consent = consent_grant(actor=patient_user, patient=patient_user.patient, **terms)
    response = api_as(patient_user).post(f"{URL}{consent.consent_id}/revoke/")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert ledger.evaluate("consent", "ReadConsent", consent.consent_id).json()["status"] == "revoked"


def test_grant_naming_another_patient_is_403_and_nothing_reaches_the_ledger(
    patient_user, other_patient_user, terms, ledger
):
    height = ledger.height()
    response = api_as(patient_user).post(
        URL, consent_api_body(terms, patient_pseudonym=other_patient_user.patient.pseudonym), format="json"
    )
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_revoking_another_patients_consent_is_404_as_for_a_missing_one_and_nothing_reaches_the_ledger(
    patient_user, other_patient_user, terms, ledger
):
    """Was 403 (issue 20): reading it answered 404, so the 403 told that the consent exists."""
    consent = consent_grant(actor=patient_user, patient=patient_user.patient, **terms)
    height = ledger.height()
    response = api_as(other_patient_user).post(f"{URL}{consent.consent_id}/revoke/")
    missing = api_as(other_patient_user).post(f"{URL}cns-{'0' * 32}/revoke/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert response.json() == missing.json()
    assert ledger.height() == height
    assert ledger.evaluate("consent", "ReadConsent", consent.consent_id).json()["status"] == "active"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"grantee": "clinician:nobody"}, 400, "unknown_grantee"),
        ({"purposes": ["marketing"]}, 400, "unknown_purpose"),
        ({"categories": ["genome"]}, 400, "unknown_category"),
        ({"valid_until": (timezone.now() - timedelta(days=9)).isoformat()}, 400, "invalid_period"),
        ({"valid_from": "not a date"}, 400, "validation_failed"),
        ({"purposes": "treatment"}, 400, "validation_failed"),
        ({"purposes": ["treatment"] * 100}, 400, "validation_failed"),
        ({"grantee": "x" * 10_000}, 400, "validation_failed"),
    ],
)
def test_each_invalid_grant_gets_its_code_and_writes_nothing(patient_user, terms, ledger, change, status, code):
    height = ledger.height()
    response = api_as(patient_user).post(URL, consent_api_body(terms, **change), format="json")
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_malformed_json_is_refused_with_a_code(patient_user):
    response = api_as(patient_user).post(URL, b"{not json", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")


def test_listing_shows_each_role_what_it_may_see(
    patient_user, other_patient_user, clinician, other_clinician, auditor, terms
):
    mine = consent_grant(actor=patient_user, patient=patient_user.patient, **terms)
    consent_grant(
        actor=other_patient_user,
        patient=other_patient_user.patient,
        **{**terms, "grantee_id": other_clinician.clinician_profile.grantee_id},
    )

    def ids(user, **params):
        response = api_as(user).get(URL, params)
        assert response.status_code == 200
        return [c["consent_id"] for c in response.json()["results"]]

    assert ids(patient_user) == [mine.consent_id]
    assert ids(clinician) == [mine.consent_id]
    assert len(ids(other_clinician)) == 1
    assert len(ids(auditor)) == 2
    assert api_as(other_patient_user).get(f"{URL}{mine.consent_id}/").status_code == 404


def test_list_filters_by_status_purpose_category_and_grantee(patient_user, terms, organisation):
    active = consent_grant(actor=patient_user, patient=patient_user.patient, **terms)
    org = consent_grant(
        actor=patient_user,
        patient=patient_user.patient,
        **{**terms, "grantee_id": organisation.grantee_id, "purposes": ["research"], "categories": ["laboratory"]},
    )
    client = api_as(patient_user)
    client.post(f"{URL}{org.consent_id}/revoke/")

    def ids(**params):
        return [c["consent_id"] for c in client.get(URL, params).json()["results"]]

    assert ids(status="active") == [active.consent_id]
    assert ids(status="revoked") == [org.consent_id]
    assert ids(purpose=BREAST_CANCER) == [active.consent_id]
    assert ids(category="laboratory") == [org.consent_id]
    assert ids(grantee="org:st-marys") == [org.consent_id]
    assert client.get(URL, {"status": "bogus"}).json()["code"] == "validation_failed"


def test_history_endpoint_lists_the_ledger_changes(patient_user, terms):
    consent = consent_grant(actor=patient_user, patient=patient_user.patient, **terms)
    client = api_as(patient_user)
    client.post(f"{URL}{consent.consent_id}/revoke/")
    history = client.get(f"{URL}{consent.consent_id}/history/").json()
    assert [(h["status"], h["block_number"] is not None) for h in history] == [("active", True), ("revoked", True)]


def test_only_patients_grant_and_anonymous_is_refused(clinician, auditor, terms, client):
    assert api_as(clinician).post(URL, consent_api_body(terms), format="json").status_code == 403
    assert api_as(auditor).post(URL, consent_api_body(terms), format="json").status_code == 403
    assert client.get(URL).status_code in (401, 403)
    assert client.post(URL, consent_api_body(terms), content_type="application/json").status_code in (401, 403)


def test_grantee_directory_lists_clinicians_and_organisations_for_patients(patient_user, clinician):
    directory = api_as(patient_user).get("/api/grantees/").json()
    assert {(g["grantee_id"], g["kind"]) for g in directory} == {
        (clinician.clinician_profile.grantee_id, "clinician"),
        ("org:st-marys", "organisation"),
    }
    assert api_as(clinician).get("/api/grantees/").status_code == 403


def test_consents_are_in_the_openapi_schema(client):
    schema = client.get("/api/schema/").content
    for path in (
        b"/api/consents/",
        b"/api/consents/{consent_id}/revoke/",
        b"/api/consents/fhir/",
        b"/api/consents/{consent_id}/fhir/",
        b"/api/grantees/",
    ):
        assert path in schema
