"""The FHIR API read by a FHIR client library (fhirpy's SyncFHIRClient) over HTTP, against a live server: the
CapabilityStatement, Consent and AuditEvent searches paged through their `next` links, as a patient with their
token and as an auditor with the token staff get after their second factor."""

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound
from rest_framework.authtoken.models import Token

from tests.clients import staff_token
from tests.fhir_api.conftest import valid_fhir


@pytest.fixture
def fhir_client(transactional_db, live_server):
    def client(token: str) -> SyncFHIRClient:
        return SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Token {token}")

    return client


def test_a_fhir_client_reads_the_capability_statement(fhir_client, patient_user):
    statement = fhir_client(Token.objects.create(user=patient_user).key).execute("metadata", method="get")
    valid_fhir(statement, "CapabilityStatement")
    assert statement["fhirVersion"] == "4.0.1"


def test_a_patient_searches_their_consents_and_access_events_and_pages_through_them(fhir_client, fhir_world):
    client = fhir_client(Token.objects.create(user=fhir_world.alice).key)
    consents = client.resources("Consent").search(status="active").limit(1).fetch_all()
    assert {consent["id"] for consent in consents} == fhir_world.alice_consents - {fhir_world.alice_revoked}
    for consent in consents:
        valid_fhir(consent.serialize(), "Consent")
    events = client.resources("AuditEvent").limit(2).fetch_all()  # three pages
    assert len(events) == 5
    assert len({event["id"] for event in events}) == 5
    for event in events:
        valid_fhir(event.serialize(), "AuditEvent")
    (own,) = fhir_world.alice_consents - {fhir_world.alice_revoked} - fhir_world.carol_consents
    assert client.reference("Consent", own).to_resource()["id"] == own
    with pytest.raises(ResourceNotFound):
        client.reference("Consent", fhir_world.bob_consent).to_resource()
    everything = client.execute(f"Patient/{fhir_world.alice_pseudonym}/$everything", method="get")
    valid_fhir(everything, "Bundle")
    assert {item["resource"]["resourceType"] for item in everything["entry"]} == {
        "Patient",
        "Observation",
        "Consent",
        "AuditEvent",
    }


def test_an_auditor_with_a_staff_token_searches_the_access_log(fhir_client, fhir_world, auditor):
    client = fhir_client(staff_token(auditor.username))
    refused = client.resources("AuditEvent").search(outcome="4").limit(1).fetch_all()
    assert {event["outcome"] for event in refused} == {"4"}
    assert len(refused) == 2
    by_patient = client.resources("AuditEvent").search(patient=fhir_world.bob_pseudonym).fetch_all()
    assert len(by_patient) == 2
    assert len(client.resources("Consent").limit(3).fetch_all()) == 4
    with pytest.raises(ForbiddenError):
        client.execute(f"Patient/{fhir_world.alice_pseudonym}/$everything", method="get")
    with pytest.raises(OperationOutcome) as unknown:
        client.resources("AuditEvent").search(_sort="date").fetch()
    assert unknown.value.resource["issue"][0]["code"] == "invalid"
