"""schemathesis over the OpenAPI schema: every operation, as every role, with data present.

The schema is read from /api/schema/ and every request goes to the WSGI application in this process
(no server). Each operation gets schema-valid and schema-violating examples, with path ids drawn at
random and from objects that exist; each response must not be a 5xx and must conform to the schema
(documented status, content type, headers and body shape).

Emergency access has its state too: the clinician's declarations (one open, one about a patient who forbids
emergency reads of imaging, one reviewed), read by a category the patients have records in, and a declaration
asked for a patient the platform knows and for one it does not; and so do misuse alerts (one open, one triaged).
"""

import copy
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
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.serialization import quote_all

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


@pytest.fixture
def connection_kept_between_requests():
    """The database connection stays open from one request to the next, as Django's test client keeps it.

    The WSGI application closes it when each request ends (CONN_MAX_AGE 0), and the next request opens a new one:
    over the test's 1,536 requests that was a fifth of its time on SQLite and a third on PostgreSQL, spent on
    something no check here looks at.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


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


def data_values(data: PlatformData, emergencies_present: EmergenciesPresent) -> list[list[str]]:
    """The values of the test's data that `case_strategies` puts into cases, in the same order in every test."""
    return [
        data.record_ids,
        data.consent_ids,
        data.analysis_ids,
        data.export_ids,
        data.model_names,
        data.grantee_ids,
        data.invitation_ids,
        emergencies_present.declaration_ids,
        [emergencies_present.identifier],
        emergencies_present.alert_ids,
    ]


# Per operation: the data values the cases were generated with, and the cases (see `generated_cases`).
GENERATED: dict[str, tuple[list[list[str]], list[schemathesis.Case]]] = {}


def generated_cases(operation, data: PlatformData, emergencies_present: EmergenciesPresent) -> list[schemathesis.Case]:
    """The cases Hypothesis generates for `operation` from `case_strategies`, carrying this test's data.

    Hypothesis generates them once per process: the strategies are the same for every role, the generation is
    derandomized and takes nothing from the responses, and the data's values are given to the strategies as they
    are (no draw depends on them). So another role's test would generate the same cases with its own data's
    values in the same places, and that is what it gets: the first generation's, with those values replaced.
    That generation is more than half of a test's time; the requests and the checks are each test's own.
    """
    values = data_values(data, emergencies_present)
    if operation.label not in GENERATED:
        cases: list[schemathesis.Case] = []

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_MODE * 2,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @hypothesis.given(case=case_strategies(operation, data, emergencies_present))
        def generate(case: schemathesis.Case) -> None:
            cases.append(case)

        generate()
        GENERATED[operation.label] = (values, cases)
    generated_with, cases = GENERATED[operation.label]
    assert [len(group) for group in generated_with] == [len(group) for group in values], "the data's shape changed"
    replacements = {}
    for old_group, group in zip(generated_with, values, strict=True):
        for old, new in zip(old_group, group, strict=True):
            replacements[old] = new
            replacements[url_quoted(old)] = url_quoted(new)  # the form path parameters take in a generated case
    return [with_values_replaced(case, replacements) for case in cases]


def url_quoted(value: str) -> str:
    """`value` as schemathesis quotes a path parameter."""
    return quote_all({"value": value})["value"]


def copied(value: Any) -> Any:
    """A list or dict copied; anything else (a string, bytes, NOT_SET, which compares by identity) itself."""
    return copy.deepcopy(value) if isinstance(value, list | dict) else value


def with_values_replaced(case: schemathesis.Case, replacements: dict[str, str]) -> schemathesis.Case:
    """A copy of `case` whose path parameters and top-level body fields equal to a key of `replacements` are
    its value instead. Its metadata is a copy too: sending the case updates it."""

    def replaced(values: dict[str, Any]) -> dict[str, Any]:
        return {
            name: replacements.get(value, value) if isinstance(value, str) else value for name, value in values.items()
        }

    return schemathesis.Case(
        operation=case.operation,
        method=case.method,
        path=case.path,
        path_parameters=replaced(case.path_parameters),
        headers=copy.deepcopy(case.headers),
        cookies=copy.deepcopy(case.cookies),
        query=copy.deepcopy(case.query),
        body=replaced(copy.deepcopy(case.body)) if isinstance(case.body, dict) else copied(case.body),
        media_type=case.media_type,
        multipart_content_types=case.multipart_content_types,
        meta=copy.deepcopy(case._meta),
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_conforms_to_the_schema_and_never_fails_with_5xx(
    role, platform_data, emergencies_present, connection_kept_between_requests
):
    schema = api_schema()
    headers = platform_data.headers(role)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 28
    for operation in operations:
        case = None
        try:
            for case in generated_cases(operation, platform_data, emergencies_present):
                response = case.call(headers=headers)
                case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as error:  # an operation's first failure; all of them, reported together
            failures.append(f"{operation.label} as {role}, {case!r}:\n{error}")
    assert not failures, "\n\n".join(failures)
