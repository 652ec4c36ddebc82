import copy
from datetime import timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B.consent import Consent as FhirConsent

from consent.fhir import consent_from_fhir, consent_to_fhir
from consent.models import Consent
from consent.services import consent_grant, consent_revoke
from tests.clients import api_as

URL = "/api/consents/"


@pytest.fixture
def exported(patient_user, terms):
    consent = consent_grant(
        actor=patient_user,
        patient=patient_user.patient,
        **{**terms, "valid_from": timezone.now() + timedelta(minutes=1)},
    )
    response = api_as(patient_user).get(f"{URL}{consent.consent_id}/fhir/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    return consent, response.json()


def test_export_validates_against_the_fhir_models(exported):
    consent, resource = exported
    parsed = FhirConsent.model_validate(resource)
    assert parsed.status == "active"
    assert parsed.provision.type == "permit"
    assert parsed.provision.actor[0].reference.identifier.value == consent.grantee
    assert [c.code for c in parsed.provision.purpose] == consent.purposes
    assert [c.code for c in parsed.provision.class_fhir] == consent.categories
    assert parsed.patient.identifier.value == consent.patient.pseudonym


def test_export_of_a_revoked_consent_is_inactive_and_still_valid(patient_user, exported):
    consent, _ = exported
    revoked = consent_revoke(actor=patient_user, consent=consent)
    resource = consent_to_fhir(revoked)
    assert FhirConsent.model_validate(resource).status == "inactive"


def test_export_round_trips_through_import(exported, patient_user):
    original, resource = exported
    response = api_as(patient_user).post(f"{URL}fhir/", resource, format="json")
    assert response.status_code == 201
    imported = Consent.objects.get(consent_id=response.json()["consent_id"])
    assert imported.consent_id != original.consent_id
    again = consent_to_fhir(imported)
    for resource_ in (resource, again):
        resource_.pop("id")
        resource_.pop("dateTime")
    assert again == resource


def _with(resource, path, value):
    changed = copy.deepcopy(resource)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("provision", "type"), "deny", "provision.type"),
        (("provision", "provision"), [{"type": "deny"}], "provision.provision"),
        (
            ("provision", "action"),
            [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "provision.action",
        ),
        (("provision", "dataPeriod"), {"start": "2020-01-01"}, "provision.dataPeriod"),
        (("provision", "securityLabel"), [{"system": "http://x", "code": "R"}], "provision.securityLabel"),
        (("provision", "period"), None, "provision.period"),
        (("provision", "actor"), [], "provision.actor"),
        (("provision", "purpose"), [{"system": "http://other", "code": "TREAT"}], "provision.purpose[0]"),
        (("provision", "class"), [{"system": "http://other", "code": "imaging"}], "provision.class[0]"),
        (("status",), "draft", "status"),
        (("patient",), {"reference": "Patient/123"}, "patient"),
    ],
)
def test_an_unsupported_consent_is_refused_with_a_code_naming_the_field(
    exported, patient_user, ledger, path, value, field
):
    _, resource = exported
    height, count = ledger.height(), Consent.objects.count()
    response = api_as(patient_user).post(f"{URL}fhir/", _with(resource, path, value), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "fhir_unsupported"
    assert response.json()["detail"]["field"] == field
    assert (ledger.height(), Consent.objects.count()) == (height, count)


def test_invalid_fhir_is_refused_as_fhir_invalid(exported, patient_user):
    _, resource = exported
    response = api_as(patient_user).post(f"{URL}fhir/", _with(resource, ("status",), 42), format="json")
    assert (response.status_code, response.json()["code"]) == (400, "fhir_invalid")
    assert "42" not in response.content.decode()


def test_unknown_codes_in_a_consent_are_refused_by_the_grant_rules(exported, patient_user):
    _, resource = exported
    changed = _with(
        resource,
        ("provision", "purpose"),
        [{"system": "https://health-platform.example/fhir/CodeSystem/purpose", "code": "marketing"}],
    )
    response = api_as(patient_user).post(f"{URL}fhir/", changed, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_purpose")


def test_importing_a_consent_for_another_patient_is_403(exported, other_patient_user, ledger):
    _, resource = exported
    height = ledger.height()
    response = api_as(other_patient_user).post(f"{URL}fhir/", resource, format="json")
    assert response.status_code == 403
    assert ledger.height() == height


def test_not_a_consent_is_refused(patient_user):
    response = api_as(patient_user).post(f"{URL}fhir/", {"resourceType": "Patient"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "not_a_consent")
    assert consent_from_fhir.__doc__  # the mapping is documented where it is implemented
