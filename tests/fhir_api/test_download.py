"""The patient's "download my data": Patient/$everything as one file, the patient's only, logged on the ledger first.

Through the API (/fhir/Patient/<pseudonym>/$download) and the portal's button (POST /audit/my-data/download/).
"""

import hashlib
import json

import pytest
from rest_framework.authtoken.models import Token

from audit.models import AccessEvent
from health_platform import bootstrap
from records.models import Record
from tests.clients import api_as, signed_in
from tests.fhir_api.conftest import FHIR_JSON, outcome_code, resources, valid_fhir

pytestmark = pytest.mark.django_db


def download_path(pseudonym: str) -> str:
    return f"/fhir/Patient/{pseudonym}/$download"


def downloaded(response) -> dict:
    """The file of a download answered 200: an attachment of application/fhir+json, a valid FHIR R4 Bundle."""
    assert response.status_code == 200, (response.status_code, response.content[:500])
    assert response["Content-Type"] == FHIR_JSON
    assert response["Content-Disposition"].startswith('attachment; filename="my-health-data-')
    return valid_fhir(json.loads(response.content), "Bundle")


def event_id_hash(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()


def export_events():
    return AccessEvent.objects.filter(kind="export")


def test_the_download_holds_exactly_what_everything_holds_for_the_patient_and_validates(fhir_world):
    alice = fhir_world.alice_pseudonym
    bundle = downloaded(api_as(fhir_world.alice).get(download_path(alice)))
    assert bundle["type"] == "searchset"
    assert bundle["total"] == len(bundle["entry"])
    (patient,) = resources(bundle, "Patient")
    assert patient["id"] == alice
    observations = resources(bundle, "Observation")
    assert observations
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{alice}"}
    assert {c["id"] for c in resources(bundle, "Consent")} == fhir_world.alice_consents
    assert {e["id"] for e in resources(bundle, "AuditEvent")} == {
        event_id_hash(name) for name in ("e1", "e2", "e4", "e5", "e7")
    }
    # The same builders as $everything: the same entries, in the same order; $everything now also shows the
    # download itself, last.
    everything = api_as(fhir_world.alice).get(f"/fhir/Patient/{alice}/$everything", {"_count": "200"}).json()
    assert bundle["entry"] == everything["entry"][:-1]
    (download,) = export_events()
    assert everything["entry"][-1]["resource"]["id"] == event_id_hash(download.event_id)


def test_the_download_holds_nothing_of_another_patient(fhir_world):
    answer = api_as(fhir_world.alice).get(download_path(fhir_world.alice_pseudonym))
    downloaded(answer)
    assert fhir_world.bob_pseudonym.encode() not in answer.content
    assert fhir_world.bob_consent.encode() not in answer.content
    for bob_event in ("e3", "e6"):
        assert event_id_hash(bob_event).encode() not in answer.content


def test_each_download_is_logged_on_the_ledger_first_with_the_files_hash(fhir_world):
    alice = fhir_world.alice_pseudonym
    answer = api_as(fhir_world.alice).get(download_path(alice))
    bundle = downloaded(answer)
    download_id = bundle["identifier"]["value"]
    (event,) = export_events()
    assert (event.grantee, event.patient_pseudonym, event.purpose) == (f"patient:{alice}", alice, "patient-request")
    assert (event.request_id, event.decision) == (download_id, "admit")
    assert event.export_sha256 == hashlib.sha256(answer.content).hexdigest()
    batch = bootstrap.contracts().read_access_batch(download_id)
    assert batch is not None
    assert batch.tx_id == event.tx_id
    assert batch.events[0]["export_sha256"] == event.export_sha256
    # The next download shows the first as an AuditEvent of the patient's (pseudonymous, with its transaction).
    second = downloaded(api_as(fhir_world.alice).get(download_path(alice)))
    (logged,) = [e for e in resources(second, "AuditEvent") if e["id"] == event_id_hash(event.event_id)]
    assert logged["purposeOfEvent"][0]["coding"][0]["code"] == "PATRQT"
    assert logged["agent"][0]["who"]["identifier"]["value"] == f"patient:{alice}"
    ledger_entity = [x for x in logged["entity"] if x["what"]["identifier"]["value"] == event.tx_id]
    assert ledger_entity
    # And the patient's "who used my data" page says it in plain words.
    assert "You downloaded your data" in signed_in(fhir_world.alice).get("/audit/my-data/").content.decode()


def test_no_ledger_no_download(fhir_world, ledger_switch):
    ledger_switch.down()
    answer = api_as(fhir_world.alice).get(download_path(fhir_world.alice_pseudonym))
    assert outcome_code(answer, 503) == "ledger_unavailable"
    page = signed_in(fhir_world.alice).post("/audit/my-data/download/")
    assert page.status_code == 503
    assert b'"resourceType"' not in page.content
    ledger_switch.up()
    assert not export_events().exists()


def test_staff_are_refused_and_a_patient_never_gets_another_patients_data(fhir_world, clinician, auditor, custodian):
    alice, bob = fhir_world.alice_pseudonym, fhir_world.bob_pseudonym
    for staff in (clinician, auditor, custodian):
        assert outcome_code(api_as(staff).get(download_path(alice)), 403) == "permission_denied"
        assert signed_in(staff).post("/audit/my-data/download/").status_code == 403
    assert outcome_code(api_as().get(download_path(alice)), 401) == "not_authenticated"
    # Bob guessing: Alice's pseudonym, a missing one, variations of his own; each as if it did not exist.
    for guess in (alice, "0" * 64, bob.upper(), f"{bob} ", f"{bob[:-1]}", "..", "%2e%2e", f"{bob}%00"):
        assert outcome_code(api_as(fhir_world.bob).get(download_path(guess)), 404) == "not_found", guess
    assert not export_events().exists()
    # The portal's button takes no pseudonym at all: it downloads the signed-in patient's own.
    own = signed_in(fhir_world.bob).post("/audit/my-data/download/")
    assert resources(downloaded(own), "Patient")[0]["id"] == bob
    assert alice.encode() not in own.content


def test_a_token_downloads_as_a_session_does(fhir_world):
    token = Token.objects.create(user=fhir_world.alice)
    answer = api_as().get(download_path(fhir_world.alice_pseudonym), HTTP_AUTHORIZATION=f"Token {token.key}")
    downloaded(answer)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?_count=5", 400, "fhir_unknown_parameter"),
        ("?patient=0000", 400, "fhir_unknown_parameter"),
        ("?%00=1", 400, "fhir_unknown_parameter"),
        ("?_format=xml", 406, "not_acceptable"),
        ("?_format=json&_format=json", 400, "fhir_invalid_parameter"),
        ("?_format=", 406, "not_acceptable"),
    ],
)
def test_hostile_query_parameters_are_refused_with_stable_codes_and_nothing_logged(fhir_world, query, status, code):
    answer = api_as(fhir_world.alice).get(download_path(fhir_world.alice_pseudonym) + query)
    assert outcome_code(answer, status) == code
    assert not export_events().exists()


def test_only_get_downloads(fhir_world):
    client = api_as(fhir_world.alice)
    for method in ("head", "post", "put", "delete"):
        assert getattr(client, method)(download_path(fhir_world.alice_pseudonym)).status_code == 405, method
    assert signed_in(fhir_world.alice).get("/audit/my-data/download/").status_code == 405
    assert not export_events().exists()


def test_a_download_past_the_limit_is_refused_before_or_after_opening_the_records(fhir_world, settings):
    alice = fhir_world.alice_pseudonym
    settings.PATIENT_DOWNLOAD_MAX_ENTRIES = 3  # fewer than the consents and events alone
    answer = api_as(fhir_world.alice).get(download_path(alice))
    assert outcome_code(answer, 422) == "download_too_large"
    # Enough for one entry per record, consent and event, not for the records' Observations.
    settings.PATIENT_DOWNLOAD_MAX_ENTRIES = 1 + Record.objects.filter(patient__pseudonym=alice).count() + 3 + 5
    answer = api_as(fhir_world.alice).get(download_path(alice))
    assert outcome_code(answer, 422) == "download_too_large"
    page = signed_in(fhir_world.alice).post("/audit/my-data/download/")
    assert page.status_code == 422
    assert "too large" in page.content.decode()
    assert not export_events().exists()


def test_the_my_data_page_offers_the_download_as_a_form_with_a_csrf_token(fhir_world):
    html = signed_in(fhir_world.alice).get("/audit/my-data/").content.decode()
    form = html[html.index('id="download-my-data"') - 80 :]
    assert 'action="/audit/my-data/download/"' in form[:200]
    assert 'name="csrfmiddlewaretoken"' in form[:400]
