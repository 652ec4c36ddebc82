from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from consent.models import Consent
from tests.clients import api_as
from tests.conftest import BREAST_CANCER, consent_api_body
from tests.signing import api_grant, api_revoke, grant_signed, passkey_of

URL = "/api/consents/"


def test_patient_grants_through_the_api_and_gets_the_transaction(patient_user, terms, ledger):
    response = api_grant(api_as(patient_user), patient_user.patient, consent_api_body(terms))
    assert response.status_code == 201
    (body,) = response.json()
    assert body["patient_signed"] is True
    assert len(body["grant_signature"]) == 64
    assert body["patient_pseudonym"] == patient_user.patient.pseudonym
    assert body["effective_status"] == "active"
    assert ledger.locate(body["granted_tx_id"]).block_number == body["granted_block"]


def test_patient_revokes_through_the_api(patient_user, terms, ledger):
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    response = api_revoke(api_as(patient_user), patient_user.patient, consent.consent_id)
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    on_ledger = ledger.evaluate("consent", "ReadConsent", consent.patient.pseudonym, consent.consent_id).json()
    assert on_ledger["status"] == "revoked"


def test_grant_naming_another_patient_is_403_and_nothing_reaches_the_ledger(
    patient_user, other_patient_user, terms, ledger
):
    height = ledger.height()
    response = api_grant(
        api_as(patient_user),
        patient_user.patient,
        consent_api_body(terms, patient_pseudonym=other_patient_user.patient.pseudonym),
    )
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_revoking_another_patients_consent_is_404_as_for_a_missing_one_and_nothing_reaches_the_ledger(
    patient_user, other_patient_user, terms, ledger
):
    """Was 403 (issue 20): reading it answered 404, so the 403 told that the consent exists."""
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    height = ledger.height()
    for path in (f"{consent.consent_id}/revoke/", f"{consent.consent_id}/revoke/sign-request/"):
        response = api_as(other_patient_user).post(f"{URL}{path}", {}, format="json")
        missing = api_as(other_patient_user).post(f"{URL}{path.replace(consent.consent_id, 'cns-' + '0' * 32)}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
        assert response.json() == missing.json()
    assert ledger.height() == height
    on_ledger = ledger.evaluate("consent", "ReadConsent", consent.patient.pseudonym, consent.consent_id).json()
    assert on_ledger["status"] == "active"


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
    response = api_grant(api_as(patient_user), patient_user.patient, consent_api_body(terms, **change))
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_malformed_json_is_refused_with_a_code(patient_user):
    response = api_as(patient_user).post(URL, b"{not json", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")


def test_listing_shows_each_role_what_it_may_see(
    patient_user, other_patient_user, clinician, other_clinician, auditor, terms
):
    mine = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    grant_signed(
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
    active = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    org = grant_signed(
        actor=patient_user,
        patient=patient_user.patient,
        **{**terms, "grantee_id": organisation.grantee_id, "purposes": ["research"], "categories": ["laboratory"]},
    )
    client = api_as(patient_user)
    api_revoke(client, patient_user.patient, org.consent_id)

    def ids(**params):
        return [c["consent_id"] for c in client.get(URL, params).json()["results"]]

    assert ids(status="active") == [active.consent_id]
    assert ids(status="revoked") == [org.consent_id]
    assert ids(purpose=BREAST_CANCER) == [active.consent_id]
    assert ids(category="laboratory") == [org.consent_id]
    assert ids(grantee="org:st-marys") == [org.consent_id]
    assert client.get(URL, {"status": "bogus"}).json()["code"] == "validation_failed"


def test_history_endpoint_lists_the_ledger_changes(patient_user, terms):
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    client = api_as(patient_user)
    api_revoke(client, patient_user.patient, consent.consent_id)
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


def test_a_grant_without_the_patients_signature_is_refused_and_writes_nothing(patient_user, terms, ledger):
    """The terms alone (the API's shape before signatures), or a document without its signature: the platform
    cannot grant for the patient."""
    client = api_as(patient_user)
    height = ledger.height()
    document = client.post(f"{URL}sign-request/", consent_api_body(terms), format="json").json()["document"]
    for body in (consent_api_body(terms), {"document": document}, {"document": document, "signature": {}}):
        response = client.post(URL, body, format="json")
        assert response.status_code in (400, 403)
        assert response.json()["code"] in ("signature_required", "validation_failed")
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def _one_more_category(document):
    return {**document, "grants": [{**document["grants"][0], "categories": ["imaging", "laboratory"]}]}


def _a_day_longer(document):
    grant = document["grants"][0]
    longer = (datetime.fromisoformat(grant["valid_until"].replace("Z", "+00:00")) + timedelta(days=1)).isoformat()
    return {**document, "grants": [{**grant, "valid_until": longer.replace("+00:00", "Z")}]}


@pytest.mark.parametrize("tamper", [_one_more_category, _a_day_longer])
def test_a_document_changed_after_the_patient_signed_it_is_refused(patient_user, terms, ledger, tamper):
    """What the web process sends must be exactly what the passkey signed: a changed grant (more categories, say)
    under the patient's genuine signature is refused by the ledger."""
    client = api_as(patient_user)
    document = client.post(f"{URL}sign-request/", consent_api_body(terms), format="json").json()["document"]
    signature = passkey_of(patient_user.patient).sign(document)
    height = ledger.height()
    response = client.post(URL, {"document": tamper(document), "signature": signature}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "challenge_mismatch")
    assert ledger.height() == height
    assert Consent.objects.count() == 0


def test_a_signed_grant_submitted_twice_is_refused_as_replayed(patient_user, terms, ledger):
    client = api_as(patient_user)
    document = client.post(f"{URL}sign-request/", consent_api_body(terms), format="json").json()["document"]
    signed = {"document": document, "signature": passkey_of(patient_user.patient).sign(document)}
    assert client.post(URL, signed, format="json").status_code == 201
    again = client.post(URL, signed, format="json")
    assert (again.status_code, again.json()["code"]) == (403, "replayed")
    assert Consent.objects.count() == 1


def test_the_signing_request_names_the_patients_passkeys_on_the_ledger(patient_user, terms):
    passkey = passkey_of(patient_user.patient)
    asked = api_as(patient_user).post(f"{URL}sign-request/", consent_api_body(terms), format="json").json()
    assert asked["credential_ids"] == [passkey.credential_id_text]
    from chaincode.webauthn import document_challenge

    assert asked["challenge"] == document_challenge(asked["document"])


@pytest.mark.parametrize(
    "change",
    [
        {"grants": "all of them"},
        {"grants": []},
        {"grants": [[1]]},
        {"grants": [{"grantee": ["x"], "purposes": [["x"]], "categories": [{}], "valid_from": 1, "valid_until": None}]},
        {"grants": [{}]},
        {"issued_at": ["2026"]},
        {"action": "revoke_consent"},
        {"patient_pseudonym": None},
        "unhashable-purposes",
    ],
)
def test_a_hostile_document_is_refused_with_a_code_and_writes_nothing(patient_user, terms, ledger, change):
    client = api_as(patient_user)
    document = client.post(f"{URL}sign-request/", consent_api_body(terms), format="json").json()["document"]
    if change == "unhashable-purposes":  # a known grantee, then purposes no vocabulary can hold
        change = {"grants": [{**document["grants"][0], "purposes": [["treatment"]], "categories": [{"a": 1}]}]}
    document = {**document, **change}
    signature = passkey_of(patient_user.patient).sign(document)
    height = ledger.height()
    response = client.post(URL, {"document": document, "signature": signature}, format="json")
    assert response.status_code in (400, 403)
    assert response.json()["code"] in {
        "invalid_document",
        "unknown_grantee",
        "unknown_purpose",
        "unknown_category",
        "invalid_period",
        "permission_denied",
    }
    assert ledger.height() == height
    assert Consent.objects.count() == 0
