"""Directory fixtures: a patient ingested through the API (identifier MRN-000777), and invitations."""

import json
import re

import pytest

from records.models import Patient
from tests.clients import api_as
from tests.records.factories import MRN_SYSTEM, bundle, patient_with_observations

MRN = "MRN-000777"
LINK = re.compile(r"https?://[^\s]+/enrol/link/([0-9A-Z]+)/")


@pytest.fixture
def ingested(custodian, ledger) -> Patient:
    """The patient behind MRN-000777, ingested through POST /api/records/ as the custodian."""
    response = api_as(custodian).post(
        "/api/records/", json.dumps(bundle(*patient_with_observations(mrn=MRN))), content_type="application/fhir+json"
    )
    assert response.status_code in (200, 201), response.content
    (patient,) = Patient.objects.all()
    return patient


def invite_body(**change) -> dict:
    return {"identifier_system": MRN_SYSTEM, "identifier_value": MRN, "email": "pat@example.org", **change}


def token_in(message) -> str:
    match = LINK.search(message.body)
    assert match, "the e-mail holds the enrolment link"
    return match.group(1)
