"""A FHIR-aware fuzz of the API: any path under /fhir/, any mix of known and unknown parameters with valid and
hostile values, as an auditor and as a patient. Every answer is a valid FHIR resource of the kind its status calls
for (a Bundle, Consent or CapabilityStatement on success, an OperationOutcome otherwise), never a 500."""

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clients import api_as
from tests.fhir_api.conftest import fhir_answer

pytestmark = pytest.mark.django_db

NAMES = ("patient", "status", "period", "date", "agent", "outcome", "_count", "_getpagesoffset", "_format")
VALUES = (
    "active",
    "inactive,active",
    "ge2026-01-01",
    "lt2026-12-31T10:00:00+02:00",
    "eq2026",
    "sa2026",
    "2026-02-30",
    "0",
    "4,8",
    "12",
    "50",
    "201",
    "-1",
    "json",
    "xml",
    "Patient/",
    "|",
    "a|b",
    "%00",
    "\x00",
    "Patient/\u00e9",
)
PATHS = st.one_of(
    st.sampled_from(["metadata", "Consent", "AuditEvent", "Consent/x", "Patient/x/$everything", "Observation"]),
    st.builds(lambda resource: f"Consent/{quote(resource, safe='')}", st.text(min_size=1, max_size=70)),
    st.builds(lambda name: f"Patient/{quote(name, safe='')}/$everything", st.text(min_size=1, max_size=70)),
    st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=30),
)
PARAMETERS = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(NAMES), st.text(max_size=12)),
        st.one_of(st.sampled_from(VALUES), st.text(max_size=40)),
    ),
    max_size=4,
)
KIND = {"metadata": "CapabilityStatement", "Consent/": "Consent"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, parameters=PARAMETERS, as_patient=st.booleans())
def test_every_answer_is_valid_fhir_and_never_a_server_error(fhir_world, auditor, path, parameters, as_patient):
    client = api_as(fhir_world.alice if as_patient else auditor)
    response = client.get(f"/fhir/{path}", parameters)
    if response.status_code == 200:
        expected = next((kind for prefix, kind in KIND.items() if path.startswith(prefix)), "Bundle")
        fhir_answer(response, 200, expected)
    else:
        assert response.status_code in (400, 403, 404, 406), (path, parameters, response.status_code)
        fhir_answer(response, response.status_code, "OperationOutcome")
