"""schemathesis over the OpenAPI schema: every operation, as every role, with data present.

The schema is read from /api/schema/ and every request goes to the WSGI application in this process
(no server). Each operation gets schema-valid and schema-violating examples, with path ids drawn at
random and from objects that exist; each response must not be a 5xx and must conform to the schema
(documented status, content type, headers and body shape).

Emergency access has its state too: the clinician's declarations (one open, one about a patient who forbids
emergency reads of imaging, one reviewed), read by a category the patients have records in, and a declaration
asked for a patient the platform knows and for one it does not; and so do misuse alerts (one open, one triaged).
"""

import functools
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis

# Loaded (and rewritten by pytest) at collection, not inside the test: CPython 3.11 can fail to compile a module
# after an earlier test in the same worker caught a RecursionError (a deeply nested body), with "SystemError: AST
# constructor recursion depth mismatch"; schemathesis loads these modules lazily, at the schema's first use.
import schemathesis.specs.openapi.schemas
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from care import emergencies
from oversight import services
from tests.hostile.conftest import ROLES, PlatformData
from tests.oversight.conftest import alerts_raised

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_MODE = 12
JUSTIFICATION = "Unconscious on arrival, no relative reachable; prior imaging needed."


@functools.cache
def api_schema() -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


def existing_ids(data: PlatformData, path: str) -> dict[str, list[str]]:
    """Path parameters that name objects that exist, for the operation at `path`."""
    for parameter in ("consent_id", "grantee_id", "invitation_id"):
        if f"{{{parameter}}}" in path:
            return {parameter: getattr(data, f"{parameter}s")}
    if "{name}" in path:
        return {"name": data.model_names}
    collections = {"records": data.record_ids, "analyses": data.analysis_ids, "exports": data.export_ids}
    for collection, ids in collections.items():
        if f"/{collection}/{{id}}" in path:
            return {"id": ids}
    return {}


@dataclass(frozen=True)
class EmergenciesPresent:
    declaration_ids: list[str]
    identifier: str  # a patient's hospital identifier, as a clinician types it
    alert_ids: list[str]  # misuse alerts about the clinician: one to read and triage, one triaged already


@pytest.fixture
def emergencies_present(platform_data, mixed_analysis) -> EmergenciesPresent:
    """The clinician's declarations: one about the patient (open), one about a patient who forbids emergency reads
    of imaging, and one the auditor has reviewed."""
    _analysis, _expected, people = mixed_analysis
    (patient_user, _, _), (refusing_user, _, _) = people[:2]
    clinician, auditor = platform_data.users["clinician"], platform_data.users["auditor"]
    emergencies.emergency_refusals_set(user=refusing_user, categories=["imaging"])
    numbers = [user.username.removeprefix("patient-") for user in (patient_user, refusing_user, patient_user)]
    declared = [
        emergencies.emergency_declare(
            clinician=clinician, identifier=number, reason="unconscious", justification=JUSTIFICATION
        )
        for number in numbers
    ]
    emergencies.emergency_review(
        auditor=auditor, declaration_id=str(declared[-1].id), verdict="justified", note="Checked with the ward."
    )
    alert_ids = alerts_raised(clinician, ["2026-11-10", "2026-11-11"])
    services.alert_triage(auditor=auditor, alert_id=alert_ids[1], verdict="dismissed", note="On call.")
    return EmergenciesPresent(declaration_ids=[str(d.id) for d in declared], identifier=numbers[0], alert_ids=alert_ids)


def emergency_requests(emergencies_present: EmergenciesPresent, operation) -> list[dict[str, Any]]:
    """as_strategy() arguments that reach past the refusals to what exists: each declaration (read by a category the
    patients have records in), and a declaration for a patient the platform knows and for one it does not."""
    if "{declaration_id}" in operation.path:
        query = {"query": {"category": "imaging"}} if operation.path.endswith("/records/") else {}
        return [
            {"path_parameters": {"declaration_id": declaration_id}, **query}
            for declaration_id in emergencies_present.declaration_ids
        ]
    if "{alert_id}" in operation.path:
        return [{"path_parameters": {"alert_id": alert_id}} for alert_id in emergencies_present.alert_ids]
    if operation.path == "/api/care/emergencies/" and operation.method.upper() == "POST":
        return [
            {
                "body": {"identifier": identifier, "reason": "unconscious", "justification": JUSTIFICATION},
                "media_type": "application/json",
            }
            for identifier in (emergencies_present.identifier, "bc-9999")
        ]
    return []


def case_strategies(operation, data: PlatformData, emergencies_present: EmergenciesPresent) -> st.SearchStrategy:
    strategies = [
        operation.as_strategy(generation_mode=mode)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]
    for name, values in existing_ids(data, operation.path).items():
        strategies.extend(operation.as_strategy(path_parameters={name: value}) for value in values)
    strategies.extend(
        operation.as_strategy(**arguments) for arguments in emergency_requests(emergencies_present, operation)
    )
    return st.one_of(strategies)


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_conforms_to_the_schema_and_never_fails_with_5xx(role, platform_data, emergencies_present):
    schema = api_schema()
    headers = platform_data.headers(role)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 28
    for operation in operations:

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_MODE * 2,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.given(case=case_strategies(operation, platform_data, emergencies_present))
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as error:  # collect every operation's failure, report them together
            failures.append(f"{operation.label} as {role}:\n{error}")
    assert not failures, "\n\n".join(failures)
