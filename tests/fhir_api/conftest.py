"""The FHIR API's world: two patients with records, consents granted to a clinician (one revoked), access events
about both on the ledger; and the check every answer must pass: a valid FHIR R4 resource (fhir.resources' R4B
models, the package's R4-compatible ones) in application/fhir+json."""

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class

from audit.services import access_batch_log
from tests.audit.conftest import access_event
from tests.conftest import grant
from tests.signing import revoke_signed

FHIR_JSON = "application/fhir+json; charset=utf-8"


def valid_fhir(body: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """`body` is a valid FHIR resource of `resource_type` (and so is every resource a Bundle holds)."""
    assert body["resourceType"] == resource_type, body
    get_fhir_model_class(resource_type).model_validate(body)
    for item in body.get("entry", []):
        get_fhir_model_class(item["resource"]["resourceType"]).model_validate(item["resource"])
    return body


def fhir_answer(response, status: int, resource_type: str) -> dict[str, Any]:
    """The response's body, once its status, its content type and its validity are checked."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == FHIR_JSON
    return valid_fhir(response.json(), resource_type)


def outcome_code(response, status: int) -> str:
    """The platform's error code of an OperationOutcome answered with `status`."""
    body = fhir_answer(response, status, "OperationOutcome")
    (issue,) = body["issue"]
    assert issue["severity"] == "error"
    return issue["details"]["coding"][0]["code"]


def resources(bundle: dict[str, Any], resource_type: str | None = None) -> list[dict[str, Any]]:
    return [
        item["resource"]
        for item in bundle.get("entry", [])
        if resource_type is None or item["resource"]["resourceType"] == resource_type
    ]


@pytest.fixture
def fhir_world(cohort, clinician, other_clinician):
    """Alice and Bob (patients with records); Alice grants Dr Carol two consents (one then revoked) and Dr Dave
    one; Bob grants Dr Carol one. Five access events about Alice's records (three admitted, two refused, one of them
    to another grantee) and two about Bob's."""
    (alice, alice_patient, _), (bob, bob_patient, _) = cohort(2)
    now = timezone.now()
    alice_carol = grant(alice, alice_patient, clinician)
    alice_revoked = grant(alice, alice_patient, clinician, valid_until=now + timedelta(days=400))
    revoke_signed(actor=alice, consent=alice_revoked)
    alice_dave = grant(alice, alice_patient, other_clinician)
    bob_carol = grant(bob, bob_patient, clinician)
    carol = clinician.clinician_profile.grantee_id
    a, b = alice_patient.pseudonym, bob_patient.pseudonym
    access_batch_log(
        batch_id="fhir-batch-1",
        events=[
            access_event("e1", patient=a, grantee=carol),
            access_event("e2", patient=a, grantee=carol),
            access_event("e3", patient=b, grantee=carol),
            access_event("e4", patient=a, grantee=carol, decision="refuse", reason="consent_revoked"),
        ],
    )
    access_batch_log(
        batch_id="fhir-batch-2",
        events=[
            access_event("e5", patient=a, grantee=carol),
            access_event("e6", patient=b, grantee="org:elsewhere"),
            access_event("e7", patient=a, grantee="org:elsewhere", decision="refuse", reason="no_consent"),
        ],
    )
    return SimpleNamespace(
        alice=alice,
        bob=bob,
        alice_pseudonym=a,
        bob_pseudonym=b,
        carol=carol,
        alice_consents={alice_carol.consent_id, alice_revoked.consent_id, alice_dave.consent_id},
        alice_revoked=alice_revoked.consent_id,
        bob_consent=bob_carol.consent_id,
        carol_consents={alice_carol.consent_id, alice_revoked.consent_id, bob_carol.consent_id},
    )
