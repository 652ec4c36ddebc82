from datetime import timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B.consent import Consent as FhirConsent

from consent.fhir import consent_from_fhir, consent_to_fhir
from consent.models import Consent
from health_platform.fhir_codes import OBSERVATION_CATEGORY, PURPOSE_SYSTEM, purposes_from_codings
from tests.clients import api_as
from tests.consent import fhir_examples
from tests.consent.fhir_examples import BREAST_CANCER, GRANTS, REFUSED, changed
from tests.signing import api_import_fhir, grant_signed, passkey_of, revoke_signed

URL = "/api/consents/"


@pytest.fixture
def exported(patient_user, terms):
    consent = grant_signed(
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
    purposes = [{"system": c.system, "code": c.code} for c in parsed.provision.purpose]
    assert [c["code"] for c in purposes] == ["HRESCH", "DUO:0000007", BREAST_CANCER]  # standard codes first
    assert purposes_from_codings(purposes) == consent.purposes
    assert [(c.system, c.code) for c in parsed.provision.class_fhir] == [(OBSERVATION_CATEGORY, "imaging")]
    assert parsed.provision.actor[0].role.coding[0].code == "IRCP"
    assert parsed.policyRule.coding[0].code == "OPTIN"
    assert parsed.patient.identifier.value == consent.patient.pseudonym


def test_export_of_a_revoked_consent_is_inactive_and_still_valid(patient_user, exported):
    consent, _ = exported
    revoked = revoke_signed(actor=patient_user, consent=consent)
    resource = consent_to_fhir(revoked)
    assert FhirConsent.model_validate(resource).status == "inactive"


def test_export_round_trips_through_import(exported, patient_user):
    original, resource = exported
    response = api_import_fhir(api_as(patient_user), patient_user.patient, resource)
    assert response.status_code == 201
    [answer] = response.json()
    imported = Consent.objects.get(consent_id=answer["consent_id"])
    assert imported.consent_id != original.consent_id
    again = consent_to_fhir(imported)
    for resource_ in (resource, again):
        resource_.pop("id")
        resource_.pop("dateTime")
    assert again == resource


def test_a_training_consent_exports_with_its_own_code_and_round_trips_through_import(patient_user, terms):
    consent = grant_signed(
        actor=patient_user, patient=patient_user.patient, **{**terms, "purposes": ["training:breast-cancer"]}
    )
    resource = consent_to_fhir(consent)
    parsed = FhirConsent.model_validate(resource)
    codes = [(c.system, c.code) for c in parsed.provision.purpose]
    assert [code for _, code in codes] == ["HRESCH", "DUO:0000007", "training:breast-cancer"]
    assert codes[2][0] == PURPOSE_SYSTEM

    response = api_import_fhir(api_as(patient_user), patient_user.patient, resource)
    assert response.status_code == 201, response.content
    [answer] = response.json()
    assert Consent.objects.get(consent_id=answer["consent_id"]).purposes == ["training:breast-cancer"]


def test_training_a_family_no_model_is_declared_for_is_refused_by_the_grant_rules(exported, patient_user):
    _, resource = exported
    body = changed(resource, "provision", "purpose", [{"system": PURPOSE_SYSTEM, "code": "training:no-such-model"}])
    response = api_as(patient_user).post(f"{URL}fhir/", body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_purpose")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("provision", "type"), "deny", "provision.provision"),  # a deny with no permit in it grants nothing
        (("provision", "type"), None, "provision.type"),
        (("provision", "provision"), [{"type": "deny"}], "provision.provision[0]"),  # denies nothing named
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
        (("provision", "purpose"), [{"system": PURPOSE_SYSTEM, "code": "marketing"}], "provision.purpose[0]"),
        (("policyRule",), None, "policyRule"),
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
    response = api_as(patient_user).post(f"{URL}fhir/", changed(resource, *path, value), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "fhir_unsupported"
    assert response.json()["detail"]["field"] == field
    assert response.json()["detail"]["reason"] == response.json()["message"]
    assert (ledger.height(), Consent.objects.count()) == (height, count)


def test_invalid_fhir_is_refused_as_fhir_invalid(exported, patient_user):
    _, resource = exported
    response = api_as(patient_user).post(f"{URL}fhir/", changed(resource, "status", 42), format="json")
    assert (response.status_code, response.json()["code"]) == (400, "fhir_invalid")
    assert "42" not in response.content.decode()


def test_unknown_codes_in_a_consent_are_refused_by_the_grant_rules(exported, patient_user):
    _, resource = exported
    body = changed(
        resource,
        "provision",
        "purpose",
        [{"system": PURPOSE_SYSTEM, "code": "diagnostic-model:no-such-model"}],
    )
    response = api_as(patient_user).post(f"{URL}fhir/", body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_purpose")
    assert response.json()["detail"]["provision"] == "provision"


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


# --- the specification's kinds of consent (tests/consent/fhir_examples.py) --------------------------------------


@pytest.fixture
def example_arguments(patient_user, clinician):
    start = (timezone.now() + timedelta(minutes=1)).replace(microsecond=0)
    return patient_user.patient.pseudonym, clinician.clinician_profile.grantee_id, start, start + timedelta(days=30)


def _grants(consents):
    """What a grant says, whatever its id and transaction: grantee, purposes, categories, period."""
    return [(c.grantee, c.purposes, c.categories, c.valid_from, c.valid_until) for c in consents]


def _import(user, resource):
    response = api_import_fhir(api_as(user), user.patient, resource)
    assert response.status_code == 201, response.content[:500]
    return [Consent.objects.get(consent_id=answer["consent_id"]) for answer in response.json()]


@pytest.mark.parametrize("example", list(GRANTS), ids=lambda example: example.__name__)
def test_a_spec_style_consent_imports_to_its_grants_and_round_trips(example, example_arguments, patient_user):
    _, grantee, start, end = example_arguments

    imported = _import(patient_user, example(*example_arguments))

    assert _grants(imported) == [
        (grantee, purposes, categories, start, end) for purposes, categories in GRANTS[example]
    ]
    exported = [api_as(patient_user).get(f"{URL}{c.consent_id}/fhir/").json() for c in imported]
    for resource in exported:
        FhirConsent.model_validate(resource)
    again = [consent for resource in exported for consent in _import(patient_user, resource)]
    assert _grants(again) == _grants(imported)


@pytest.mark.parametrize(("shows", "example", "field"), REFUSED, ids=[shows for shows, _, _ in REFUSED])
def test_a_consent_with_no_exact_grant_is_refused_naming_the_provision(
    shows, example, field, example_arguments, patient_user, ledger
):
    height, count = ledger.height(), Consent.objects.count()

    response = api_as(patient_user).post(f"{URL}fhir/", example(*example_arguments), format="json")

    assert (response.status_code, response.json()["code"]) == (400, "fhir_unsupported"), response.content[:500]
    assert response.json()["detail"]["field"] == field
    assert (ledger.height(), Consent.objects.count()) == (height, count)


def test_one_permit_the_grant_rules_refuse_writes_none_of_the_others(example_arguments, patient_user, ledger):
    resource = fhir_examples.opt_out_with_exceptions(*example_arguments)
    resource["provision"]["provision"][1]["actor"] = [fhir_examples.recipient("clinician:not-in-the-directory")]
    height = ledger.height()

    response = api_as(patient_user).post(f"{URL}fhir/", resource, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "unknown_grantee")
    assert response.json()["detail"]["provision"] == "provision.provision[1]"
    assert (ledger.height(), Consent.objects.count()) == (height, 0)


def test_an_import_grants_all_its_permits_in_one_signed_transaction_or_none(
    example_arguments, patient_user, ledger, ledger_switch
):
    """One signature, one ledger transaction for every grant the resource holds: a ledger that fails leaves none
    written (before signatures, grants were written one by one and withdrawn again on a failure)."""
    resource = fhir_examples.opt_out_with_exceptions(*example_arguments)
    client = api_as(patient_user)
    asked = client.post(f"{URL}fhir/", resource, format="json").json()
    assert len(asked["document"]["grants"]) > 1
    signed = {"document": asked["document"], "signature": passkey_of(patient_user.patient).sign(asked["document"])}
    height = ledger.height()
    ledger_switch.down()
    response = client.post(URL, signed, format="json")
    ledger_switch.up()
    assert (response.status_code, response.json()["code"]) == (503, "ledger_unavailable")
    assert (ledger.height(), Consent.objects.count()) == (height, 0)

    granted = client.post(URL, signed, format="json").json()
    assert len(granted) == len(asked["document"]["grants"])
    assert len({consent["granted_tx_id"] for consent in granted}) == 1


def test_more_permits_than_a_consent_holds_are_refused(example_arguments, patient_user, ledger):
    resource = fhir_examples.opt_out_inheriting(*example_arguments)
    resource["provision"]["provision"] *= 9  # 18 permits
    height = ledger.height()

    response = api_as(patient_user).post(f"{URL}fhir/", resource, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "fhir_unsupported")
    assert response.json()["detail"]["field"] == "provision.provision"
    assert ledger.height() == height


def test_a_refusal_names_known_codes_and_never_echoes_a_code_it_was_sent(example_arguments, patient_user):
    sent = "Alice-Smith-HbA1c-9.1"
    resource = fhir_examples.opt_in(*example_arguments)
    resource["provision"]["purpose"] = [fhir_examples.TREAT, {"system": fhir_examples.V3_ACT_REASON, "code": sent}]

    refused = api_as(patient_user).post(f"{URL}fhir/", resource, format="json")
    resource["provision"]["purpose"] = [fhir_examples.ETREAT]
    emergency = api_as(patient_user).post(f"{URL}fhir/", resource, format="json")

    assert refused.json()["detail"]["field"] == "provision.purpose[1]"
    assert sent not in refused.content.decode()
    assert "ETREAT" in emergency.json()["detail"]["reason"]


def test_the_export_says_whether_the_patient_signed_the_grant(patient_user, terms):
    """verification[0].verified: true for a grant the patient's passkey signed; false for one granted before
    signatures were required ("not patient-signed"), which stays valid."""
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    assert consent_to_fhir(consent)["verification"][0]["verified"] is True
    Consent.objects.filter(pk=consent.pk).update(grant_signature="")  # the mirror of a grant made before signatures
    consent.refresh_from_db()
    assert consent_to_fhir(consent)["verification"][0]["verified"] is False
