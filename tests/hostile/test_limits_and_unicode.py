"""Oversized and deeply nested JSON on every endpoint that takes a body, and unicode edge cases in every
text field: a 4xx with a stable code and nothing stored, or (text) stored and returned unchanged;
never a 5xx, and no error that repeats what was sent."""

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from analytics.models import AnalysisRequest
from audit.models import AuditExport
from chaincode.vocabulary import OBSERVATION_CATEGORY_SYSTEM
from consent import fhir
from consent.models import Consent
from health_platform.fhir_codes import PURPOSE_SYSTEM
from health_platform.roles import Role
from health_platform.services import clinician_register, organisation_create
from records.models import Patient, Record, RecordVersion
from records.services import patient_link_user
from tests.hostile.strategies import INGEST_REFUSAL_CODES, valid_bundle
from tests.records.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

BREAST_CANCER = "diagnostic-model:breast-cancer"
MARK = "Qx7"  # put before every hostile string, so that an echo in a response is found

NASTY: dict[str, str] = {
    "nul": "a\x00b",
    "lone_high_surrogate": "\ud800",
    "lone_low_surrogate": "x\udfffy",
    "reversed_surrogates": "\udc00\ud800",
    "rtl_override": "\u202eevil\u202c.exe",
    "combining_marks": "e" + "\u0301\u0308\u0323" * 20,
    "emoji_4_byte": "\U0001f9ec\U0001f600\U0001f3f3\ufe0f\u200d\U0001f308",
    "bom_and_noncharacter": "\ufeff\uffff\U0010ffff",
    "line_separators": "a\u2028b\u2029c\r\n",
    "very_long": "\U0001f600" * 40_000 + "z" * 40_000,
}


def stored_rows() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Patient, Record, RecordVersion, Consent, AnalysisRequest, AuditExport)
    }


@dataclass
class Actors:
    clients: dict[str, APIClient]
    users: dict[str, Any]
    patient: Patient
    grantee_id: str


@pytest.fixture
def actors(db, ledger) -> Actors:
    from analytics.registry import diagnostic_models_register

    diagnostic_models_register()
    patient_user = UserFactory(username="patient-hostile", roles=[Role.PATIENT])
    patient = PatientFactory(user=patient_user)
    clinician = UserFactory(username="dr-hostile")
    profile = clinician_register(
        user=clinician, display_name="Dr Hostile", organisation=organisation_create(slug="hostile", name="Hostile")
    )
    users = {
        "patient": patient_user,
        "clinician": clinician,
        "auditor": UserFactory(username="auditor-hostile", roles=[Role.AUDITOR]),
        "custodian": UserFactory(username="custodian-hostile", roles=[Role.CUSTODIAN]),
    }
    clients = {}
    for role, user in users.items():
        clients[role] = APIClient()
        clients[role].force_authenticate(user)
    clients["anonymous"] = APIClient()
    return Actors(clients=clients, users=users, patient=patient, grantee_id=profile.grantee_id)


def consent_body(actors: Actors) -> dict[str, Any]:
    return {
        "grantee": actors.grantee_id,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": "2030-01-01T00:00:00Z",
        "valid_until": "2030-02-01T00:00:00Z",
    }


def consent_fhir_body(actors: Actors) -> dict[str, Any]:
    """A FHIR Consent the import accepts (as consent.fhir.consent_to_fhir writes one), without an id."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [fhir.SCOPE]},
        "category": [{"coding": [fhir.CATEGORY]}],
        "patient": {"identifier": {"system": fhir.PSEUDONYM_SYSTEM, "value": actors.patient.pseudonym}},
        "dateTime": "2029-12-01T00:00:00Z",
        "policyRule": {"coding": [fhir.POLICY_RULE]},
        "provision": {
            "type": "permit",
            "period": {"start": "2030-01-01T00:00:00Z", "end": "2030-02-01T00:00:00Z"},
            "actor": [
                {
                    "role": {"coding": [fhir.RECIPIENT_ROLE]},
                    "reference": {"identifier": {"system": fhir.GRANTEE_SYSTEM, "value": actors.grantee_id}},
                }
            ],
            "purpose": [{"system": PURPOSE_SYSTEM, "code": BREAST_CANCER}],
            "class": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "imaging"}],
        },
    }


def analysis_body(actors: Actors) -> dict[str, Any]:
    return {"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [actors.patient.pseudonym]}}


def export_body(actors: Actors) -> dict[str, Any]:
    return {"format": "json", "grantee": "clinician:someone", "request": "req-1"}


def token_body(actors: Actors) -> dict[str, Any]:
    return {"username": "patient-hostile", "password": "not-the-password"}


@dataclass(frozen=True)
class Endpoint:
    role: str
    url: str
    body: Callable[[Actors], dict[str, Any]]
    text_fields: tuple[tuple[Any, ...], ...]
    content_type: str = "application/json"


INGEST = Endpoint(
    "custodian",
    "/api/records/",
    lambda actors: valid_bundle(mrn_prefix="MRN-UNI"),
    (
        ("entry", 0, "resource", "name", 0, "family"),
        ("entry", 0, "resource", "name", 0, "given", 0),
        ("entry", 0, "resource", "identifier", 0, "value"),
        ("entry", 0, "resource", "identifier", 0, "system"),
        ("entry", 0, "fullUrl"),
        ("entry", 1, "resource", "id"),
        ("entry", 1, "resource", "code", "coding", 0, "display"),
        ("entry", 1, "resource", "valueQuantity", "unit"),
        ("entry", 1, "resource", "note"),
    ),
    content_type="application/fhir+json",
)
NOT_STORED = {("entry", 0, "fullUrl")}  # the bundle's addressing: a record holds the resources only
ENDPOINTS = (
    INGEST,
    Endpoint(
        "patient",
        "/api/consents/",
        consent_body,
        (("grantee",), ("purposes", 0), ("categories", 0), ("valid_from",), ("patient_pseudonym",)),
    ),
    Endpoint(
        "patient",
        "/api/consents/fhir/",
        consent_fhir_body,
        (
            ("patient", "identifier", "value"),
            ("provision", "actor", 0, "reference", "identifier", "value"),
            ("provision", "purpose", 0, "code"),
            ("provision", "class", 0, "code"),
            ("provision", "period", "start"),
            ("policyRule", "coding", 0, "code"),
            ("id",),
        ),
        content_type="application/fhir+json",
    ),
    Endpoint(
        "clinician",
        "/api/analyses/",
        analysis_body,
        (("model",), ("cohort", "kind"), ("cohort", "pseudonyms", 0), ("key_mode",), ("public_context",)),
    ),
    Endpoint(
        "auditor",
        "/api/audit/exports/",
        export_body,
        (("format",), ("grantee",), ("request",), ("patient",), ("model",), ("decision",), ("since",)),
    ),
    Endpoint("anonymous", "/api/auth/token/", token_body, (("username",), ("password",))),
)


def with_value(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = [{"text": value}] if path[-1] == "note" else value
    return changed


def post(actors: Actors, endpoint: Endpoint, body: bytes, content_type: str | None = None):
    return actors.clients[endpoint.role].post(
        endpoint.url, data=body, content_type=content_type or endpoint.content_type
    )


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *strings_in(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


# --- size and depth ------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.role}:{e.url}")
def test_oversized_body_is_413_payload_too_large_and_nothing_is_stored(actors, endpoint, settings):
    settings.ANALYTICS_REQUEST_MAX_BYTES = 256 * 1024
    limit = 256 * 1024 if endpoint.url == "/api/analyses/" else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    document = endpoint.body(actors)
    document["padding"] = "p" * (limit + 1)
    before = stored_rows()

    response = post(actors, endpoint, json.dumps(document).encode())

    assert response.status_code == 413, response.content[:300]
    assert response.json()["code"] == "payload_too_large"
    assert stored_rows() == before


@pytest.mark.parametrize("depth", [33, 100_000])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.role}:{e.url}")
def test_deeply_nested_body_is_400_json_too_deep_and_nothing_is_stored(actors, endpoint, depth):
    document = endpoint.body(actors)
    body = json.dumps(document).encode()
    nested = b"[" * depth + b"1" + b"]" * depth
    body = body[:-1] + b', "nested": ' + nested + b"}"
    before = stored_rows()

    response = post(actors, endpoint, body)

    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "json_too_deep"
    assert stored_rows() == before


def test_consent_import_takes_application_fhir_json(actors):
    response = actors.clients["patient"].post(
        "/api/consents/fhir/", data=json.dumps(consent_fhir_body(actors)), content_type="application/fhir+json"
    )

    assert response.status_code == 200, response.content  # the grant document to sign
    assert response.json()["document"]["action"] == "grant_consent"


def test_deeply_nested_line_in_an_uploaded_copy_is_refused_as_an_invalid_export(actors):
    nested = "[" * 100_000 + "1" + "]" * 100_000
    copy_text = '{"events": [\n{"event_id": "e1", "nested": ' + nested + "}\n]}\n"
    upload = SimpleUploadedFile("copy.json", copy_text.encode(), content_type="application/json")

    response = actors.clients["auditor"].post("/api/audit/verify/", {"file": upload, "format": "json"})

    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_export_file"


def test_oversized_uploaded_copy_is_413(actors, settings):
    settings.AUDIT_VERIFY_MAX_BYTES = 1024
    upload = SimpleUploadedFile("copy.csv", b"x" * 4096, content_type="text/csv")

    response = actors.clients["auditor"].post("/api/audit/verify/", {"file": upload, "format": "csv"})

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


# --- unicode in every text field -----------------------------------------------------------------


def check_unicode_answer(actors: Actors, endpoint: Endpoint, path, name: str, response, before) -> None:
    where = f"{endpoint.url} {'.'.join(map(str, path))} = {name}"
    assert response.status_code < 500, where
    answer = response.json()
    if response.status_code >= 400:
        assert isinstance(answer.get("code"), str), where
        if endpoint is INGEST:
            assert answer["code"] in INGEST_REFUSAL_CODES, where
        assert MARK not in response.content.decode("utf-8", errors="replace"), f"{where}: the error echoes the input"
        assert stored_rows() == before, f"{where}: refused but stored"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.role}:{e.url}")
def test_unicode_edge_cases_in_every_text_field_are_refused_with_a_code_or_kept_exactly(actors, endpoint):
    for path in endpoint.text_fields:
        for name, nasty in NASTY.items():
            value = MARK + nasty
            document = endpoint.body(actors)
            if endpoint is INGEST:
                document = valid_bundle(mrn_prefix=f"MRN-UNI-{len(path)}-{path[-1]}-{name}")
            body = json.dumps(with_value(document, path, value)).encode()  # lone surrogates as \\u escapes
            before = stored_rows()

            response = post(actors, endpoint, body)

            check_unicode_answer(actors, endpoint, path, name, response, before)
            if endpoint is INGEST and response.status_code in (201, 202) and path not in NOT_STORED:
                assert_ingested_text_returned_unchanged(actors, response.json(), value, where=f"{path} {name}")


def assert_ingested_text_returned_unchanged(actors: Actors, answer: dict[str, Any], value: str, where: str) -> None:
    """The patient the record belongs to reads it back: the string is there, code point for code point."""
    record = answer["records"][0]
    patient = Patient.objects.get(pseudonym=record["patient_pseudonym"])
    reader = UserFactory(username=f"reader-{patient.pk}", roles=[Role.PATIENT])
    patient_link_user(patient=patient, user=reader)
    client = APIClient()
    client.force_authenticate(reader)

    bundle = client.get(f"/api/records/{record['record_id']}/").json()["bundle"]

    assert value in strings_in(bundle), where


# --- NUL and friends in URLs: PostgreSQL text cannot hold NUL, so it must never reach a query ------

URL_PROBES = (
    ("clinician", "/api/models/breast-cancer/?version=%00"),
    ("clinician", "/api/models/breast-cancer/?version=%ED%A0%80"),
    ("clinician", "/api/analyses/?model=a%00b&status=%00"),
    ("patient", "/api/consents/?grantee=a%00b&patient_pseudonym=%00"),
    ("patient", "/api/consents/cns-a%00b/"),
    ("custodian", "/api/records/?category=%00&anchor_state=%00"),
    ("auditor", "/api/audit/events/?patient=%00&request=a%00b&since=%00"),
    ("auditor", "/api/audit/ledger/blocks/?before=%00&limit=%00"),
    ("auditor", "/api/records/00000000-0000-4000-8000-000000000000/integrity/?version=%00"),
    ("clinician", "/analytics/models/breast-cancer/?version=%00"),
    ("clinician", "/analytics/a%00b/"),
    ("patient", "/consent/cns-a%00b/"),
    ("patient", "/records/?page=%00"),
    ("auditor", "/audit/?patient=%00&grantee=a%00b"),
    ("auditor", "/audit/exports/a%00b/row/"),
    ("auditor", "/audit/ledger/?before=%00"),
)


@pytest.mark.parametrize(("role", "url"), URL_PROBES)
def test_nul_and_invalid_utf8_in_urls_are_answered_without_a_server_error(actors, role, url):
    from django.test import Client

    client = Client()
    client.force_login(actors.users[role])

    response = client.get(url)

    assert response.status_code < 500, response.content[:300]
