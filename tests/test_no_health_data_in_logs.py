"""No health data, no direct identifier and no key material in any log output (issue 7, item 6).

A patient with distinctive values (a name, an identifier, a birth date, a phone number, a free-text note and
a feature value of 123.456789) goes through everything the platform does: ingest over the API, the patient
reading the record, consent granted and revoked, an analysis (eager Celery, real TenSEAL, the real embedded
ledger) and its decrypted results, an audit export downloaded and verified. Every log record at DEBUG
(root, every named logger including the chaincode library's, Celery's and Django's), structlog's output and
whatever reaches stdout and stderr is captured, and none of the values may appear in it. Then bad input
carrying the same values: no error response repeats them, and the logs stay clean.

Then the same, as the platform runs in production: the web server as `make run` starts it (gunicorn, its
access log on stdout) and real Celery workers (custodian and compute), driven over HTTP with the values in
bodies, paths and query strings; what those processes wrote is scanned.
"""

import base64
import copy
import io
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analytics.models import AnalysisStatus
from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_patient_resources, demo_patients
from records.models import Patient
from records.services import patient_link_user
from tests.conftest import BREAST_CANCER, consent_api_body, consent_terms
from tests.records.factories import UserFactory
from tests.signing import api_grant, api_revoke, passkey_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.he, pytest.mark.slow]

MRN_SYSTEM = "https://hospital.example/fhir/NamingSystem/mrn"
NAME = "Zebulon-Quaxley"
IDENTIFIER = "ZQX-7781-MRN"
BIRTH_DATE = "1911-11-11"
PHONE = "+44 7700 900461"
NOTE = "Zebulon reports vertigo after the ferry"
FEATURE_VALUE = 123.456789  # bc-mean-perimeter: within the model's range (the dataset's row 0 has 122.8)
HEALTH_DATA = ("Zebulon", "Quaxley", "ZQX-7781", BIRTH_DATE, "7700 900461", "vertigo", "123.456789")


def seeded_bundle() -> dict:
    """The breast-cancer dataset's row 0 as a FHIR Bundle, for a patient with distinctive values."""
    [demo] = demo_patients(dataset=BREAST_CANCER_DATASET, count=1)
    resources = demo_patient_resources(demo)
    resources[0] = {
        "resourceType": "Patient",
        "id": "pt-zq",
        "identifier": [{"system": MRN_SYSTEM, "value": IDENTIFIER}],
        "name": [{"text": NAME, "family": "Quaxley", "given": ["Zebulon"]}],
        "birthDate": BIRTH_DATE,
        "telecom": [{"system": "phone", "value": PHONE}],
    }
    for observation in resources[1:]:
        observation["subject"] = {"reference": "Patient/pt-zq"}
        if observation["code"]["coding"][0]["code"] == "bc-mean-perimeter":
            observation["valueQuantity"]["value"] = FEATURE_VALUE
            observation["note"] = [{"text": NOTE}]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def key_material() -> dict[str, str]:
    """Every secret the platform holds, as it could be spelled in a log: base64 as configured, and hex."""
    secrets = {"DJANGO_SECRET_KEY": django_settings.SECRET_KEY, "PSEUDONYM_KEY": django_settings.PSEUDONYM_KEY}
    for setting in ("RECORD_ENCRYPTION_KEYS", "ANALYTICS_KEY_VAULT_KEYS"):
        for item in getattr(django_settings, setting).split(","):
            key_id, _, encoded = item.strip().partition(":")
            secrets[f"{setting}:{key_id}"] = encoded
            secrets[f"{setting}:{key_id} (hex)"] = base64.b64decode(encoded).hex()
    return {name: value for name, value in secrets.items() if len(value) >= 16}


@contextmanager
def everything_logged() -> Iterator[io.StringIO]:
    """Every logger at DEBUG, each record written to one buffer; put back as it was afterwards.

    The chaincode library is imported first: it resets levels on import (chaincode/library.py), and
    its loggers are to be captured at DEBUG too, below the WARNING the platform holds them at.
    """
    import chaincode.library  # noqa: F401
    import ledger.embedded  # noqa: F401

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    named = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    saved = [(logger, logger.level, logger.disabled) for logger in (root, *named)]
    detached = [logger for logger in named if not logger.propagate]
    saved_disable = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for logger in (root, *named):
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    root.addHandler(handler)
    for logger in detached:
        logger.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for logger in detached:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
        logging.disable(saved_disable)


def assert_absent(text: str, values: dict[str, str], where: str) -> None:
    found = sorted(name for name, value in values.items() if value in text)
    assert not found, f"{where} contains {found}"


def as_sent_in_a_url(values: dict[str, str]) -> dict[str, str]:
    """Each value and its spellings in a URL (percent-encoded, and with + for spaces), which logs keep as sent."""
    spelled = dict(values)
    for name, value in values.items():
        spelled[f"{name} (URL-encoded)"] = urllib.parse.quote(value)
        spelled[f"{name} (form-encoded)"] = urllib.parse.quote_plus(value)
    return spelled


def health_values() -> dict[str, str]:
    return {value: value for value in HEALTH_DATA}


@pytest.fixture
def people(db, clinician):
    custodian = UserFactory(username="custodian-logs", roles=[Role.CUSTODIAN])
    auditor = UserFactory(username="auditor-logs", roles=[Role.AUDITOR])
    patient_user = UserFactory(username="patient-logs", roles=[Role.PATIENT])
    clients = {}
    for role, user in {
        "custodian": custodian,
        "auditor": auditor,
        "patient": patient_user,
        "clinician": clinician,
    }.items():
        clients[role] = APIClient()
        clients[role].force_authenticate(user)
    return {"patient_user": patient_user, "clinician": clinician, "clients": clients}


@pytest.mark.usefixtures("models_registered", "blob_dir", "eager")
def test_no_health_data_or_key_material_in_any_log_output(people, tmp_path, capfd, settings):
    settings.AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    clients = people["clients"]
    capfd.readouterr()  # what fixtures printed is not under test
    responses: list[bytes] = []

    with everything_logged() as logged:
        # Ingest, and the patient reading the record back (decrypted in the web process).
        ingested = clients["custodian"].post(
            "/api/records/", data=json.dumps(seeded_bundle()), content_type="application/fhir+json"
        )
        assert ingested.status_code == 201, ingested.content
        [record] = ingested.json()["records"]
        patient = Patient.objects.get(pseudonym=record["patient_pseudonym"])
        patient_link_user(patient=patient, user=people["patient_user"])
        read = clients["patient"].get(f"/api/records/{record['record_id']}/")
        assert json.dumps(read.json()["bundle"]).count("Zebulon") >= 1  # the values are really there to leak
        responses.append(clients["auditor"].get(f"/api/records/{record['record_id']}/integrity/").content)

        # Consent: grant one to the clinician, grant and revoke another.
        grant = consent_api_body(consent_terms(people["clinician"]))
        granted = api_grant(clients["patient"], patient, grant)
        assert granted.status_code == 201, granted.content
        (other,) = api_grant(clients["patient"], patient, {**grant, "categories": ["laboratory"]}).json()
        revoked = api_revoke(clients["patient"], patient, other["consent_id"])
        assert revoked.status_code == 200, revoked.content

        # The analysis: gate, log, encrypt, score, decrypt; the clinician reads the decrypted results.
        requested = clients["clinician"].post(
            "/api/analyses/",
            {"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [patient.pseudonym]}},
            format="json",
        )
        assert requested.status_code == 201, requested.content
        analysis_id = requested.json()["id"]
        detail = clients["clinician"].get(f"/api/analyses/{analysis_id}/").json()
        assert detail["status"] == AnalysisStatus.COMPLETED, detail
        results = clients["clinician"].get(f"/api/analyses/{analysis_id}/results/").json()
        [row] = results["rows"]
        responses.append(clients["clinician"].get(f"/api/analyses/{analysis_id}/encrypted-scores/").content)

        # The audit trail: the patient's view, an export downloaded and verified.
        responses.append(clients["patient"].get("/api/audit/events/").content)
        export = clients["auditor"].post("/api/audit/exports/", {"format": "json"}, format="json")
        assert export.status_code == 202, export.content
        export_id = export.json()["id"]
        assert clients["auditor"].get(f"/api/audit/exports/{export_id}/").json()["status"] == "completed"
        exported = b"".join(clients["auditor"].get(f"/api/audit/exports/{export_id}/file/").streaming_content)
        upload = SimpleUploadedFile("copy.json", exported, content_type="application/json")
        verified = clients["auditor"].post(
            "/api/audit/verify/", {"file": upload, "format": "json", "export": export_id}
        )
        assert verified.json()["ok"] is True, verified.content
        responses.extend([exported, verified.content])

    output = capfd.readouterr()
    everything = "\n".join([logged.getvalue(), output.out, output.err])
    assert "records_ingested" in everything  # the capture works: structured events are in it
    assert "consent_revoked" in everything
    assert "analysis_completed" in everything

    score = repr(row["score"])
    assert_absent(everything, {**health_values(), "the decrypted score": score}, "the log output")
    assert_absent(everything, key_material(), "the log output")
    # What the auditor, the access log and the export see carries no clinical value either.
    assert_absent("\n".join(r.decode() for r in responses), health_values(), "an audit or metadata response")


SIGN_REQUEST = "/api/consents/sign-request/"


def bad_requests(clinician_grantee: str) -> list[tuple[str, str, str, object, str]]:
    """(role, method, url, body, content type): each carries the distinctive values where a value is wrong."""
    bundle = seeded_bundle()
    unknown_category = copy.deepcopy(bundle)
    unknown_category["entry"][1]["resource"]["category"][0]["coding"][0]["code"] = NAME
    bad_birth_date = copy.deepcopy(bundle)
    bad_birth_date["entry"][0]["resource"]["birthDate"] = f"{NAME} {BIRTH_DATE}"
    bad_quantity = copy.deepcopy(bundle)
    bad_quantity["entry"][1]["resource"]["valueQuantity"]["value"] = f"{FEATURE_VALUE} {NOTE}"
    unknown_key = copy.deepcopy(bundle)
    unknown_key["entry"][0]["resource"][NAME] = NOTE
    grant = {
        "grantee": clinician_grantee,
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": "2030-01-01T00:00:00Z",
        "valid_until": "2030-02-01T00:00:00Z",
    }
    fhir = "application/fhir+json"
    return [
        ("custodian", "post", "/api/records/", json.dumps(unknown_category), fhir),
        ("custodian", "post", "/api/records/", json.dumps(bad_birth_date), fhir),
        ("custodian", "post", "/api/records/", json.dumps(bad_quantity), fhir),
        ("custodian", "post", "/api/records/", json.dumps(unknown_key), fhir),
        ("custodian", "post", "/api/records/", json.dumps(bundle)[:-40], fhir),
        ("custodian", "post", "/api/records/", json.dumps({**bundle, "type": NAME}), fhir),
        ("patient", "post", SIGN_REQUEST, json.dumps({**grant, "grantee": NAME}), "application/json"),
        ("patient", "post", SIGN_REQUEST, json.dumps({**grant, "purposes": [NAME]}), "application/json"),
        ("patient", "post", SIGN_REQUEST, json.dumps({**grant, "categories": [NOTE]}), "application/json"),
        (  # a signed document carrying values: refused without echoing them
            "patient",
            "post",
            "/api/consents/",
            json.dumps({"document": {"action": NAME, "grants": [{**grant, "grantee": NOTE}]}, "signature": {}}),
            "application/json",
        ),
        (
            "patient",
            "post",
            SIGN_REQUEST,
            json.dumps({**grant, "valid_from": BIRTH_DATE + NAME}),
            "application/json",
        ),
        (
            "patient",
            "post",
            SIGN_REQUEST,
            json.dumps({**grant, "patient_pseudonym": IDENTIFIER}),
            "application/json",
        ),
        ("patient", "post", "/api/consents/fhir/", json.dumps({"resourceType": NAME}), fhir),
        ("patient", "post", "/api/consents/fhir/", json.dumps({"resourceType": "Consent", "status": NAME}), fhir),
        (
            "clinician",
            "post",
            "/api/analyses/",
            json.dumps({"model": NAME, "cohort": {"kind": "consented"}}),
            "application/json",
        ),
        (
            "clinician",
            "post",
            "/api/analyses/",
            json.dumps({"model": "breast-cancer", "cohort": {"kind": NAME}}),
            "application/json",
        ),
        (
            "clinician",
            "post",
            "/api/analyses/",
            json.dumps({"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [IDENTIFIER]}}),
            "application/json",
        ),
        (
            "clinician",
            "post",
            "/api/analyses/",
            json.dumps({"model": "breast-cancer", "cohort": {"kind": "consented"}, "key_mode": NAME}),
            "application/json",
        ),
        (
            "clinician",
            "post",
            "/api/analyses/",
            json.dumps(
                {
                    "model": "breast-cancer",
                    "cohort": {"kind": "consented"},
                    "key_mode": "requester",
                    "public_context": NOTE,
                }
            ),
            "application/json",
        ),
        ("auditor", "post", "/api/audit/exports/", json.dumps({"format": NAME}), "application/json"),
        (
            "auditor",
            "post",
            "/api/audit/exports/",
            json.dumps({"format": "csv", "patient": IDENTIFIER}),
            "application/json",
        ),
        ("auditor", "get", f"/api/audit/events/?patient={IDENTIFIER}&grantee={NAME}&since={BIRTH_DATE}x", None, ""),
        ("patient", "get", f"/api/consents/?purpose={NAME}&category={NOTE}&status={IDENTIFIER}", None, ""),
        ("custodian", "get", f"/api/records/?category={NAME}&anchor_state={IDENTIFIER}", None, ""),
        ("clinician", "get", f"/api/analyses/?status={NAME}", None, ""),
        ("clinician", "get", f"/api/models/{IDENTIFIER}/?version={NAME}", None, ""),
        ("anonymous", "post", "/api/auth/token/", json.dumps({"username": NAME, "password": NOTE}), "application/json"),
    ]


@pytest.mark.usefixtures("models_registered")
def test_error_responses_never_echo_submitted_values(people, capfd):
    clients = {**people["clients"], "anonymous": APIClient()}
    grantee = people["clinician"].clinician_profile.grantee_id
    capfd.readouterr()

    with everything_logged() as logged:
        for role, method, url, body, content_type in bad_requests(grantee):
            client = clients[role]
            response = client.get(url) if method == "get" else client.post(url, data=body, content_type=content_type)
            where = f"{method.upper()} {url} as {role} -> {response.status_code}"
            assert 400 <= response.status_code < 500, f"{where}: {response.content[:300]!r}"
            assert isinstance(response.json().get("code"), str), where
            assert_absent(response.content.decode(), health_values(), where)

        upload = SimpleUploadedFile("copy.csv", f"event_id,{NAME}\n{IDENTIFIER},{NOTE}\n".encode(), "text/csv")
        response = clients["auditor"].post("/api/audit/verify/", {"file": upload, "format": "csv"})
        assert (response.status_code, response.json()["code"]) == (400, "invalid_export_file")
        assert_absent(response.content.decode(), health_values(), "POST /api/audit/verify/")

    output = capfd.readouterr()
    assert_absent("\n".join([logged.getvalue(), output.out, output.err]), health_values(), "the log output")


class Http:
    """Requests to a live server as an API client sends them (a token, JSON), answers as (status, body)."""

    def __init__(self, url: str):
        self.url = url

    def __call__(self, method: str, path: str, *, token: str | None = None, body=None, content_type: str = ""):
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        if data is not None:
            headers["Content-Type"] = content_type or "application/json"
        # Query strings and paths go as a client would write them: values percent-encoded, nothing else.
        request = urllib.request.Request(
            self.url + urllib.parse.quote(path, safe="/?&=%"), data=data, method=method.upper(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


@pytest.mark.usefixtures("models_registered", "blob_dir")
def test_no_health_data_in_the_output_of_the_web_server_and_the_workers(
    people, start_web, start_worker, start_compute_worker
):
    """gunicorn's access and error logs, the platform's logs in the web process and both Celery workers' logs,
    with every request of the first two tests sent over HTTP (health values in bodies, paths and query strings)
    and an analysis run by the workers."""
    custodian_worker = start_worker(queues="custodian")
    compute_worker = start_compute_worker()
    web = start_web()
    http = Http(web.url)
    users = {
        "custodian": UserFactory(username="custodian-live", roles=[Role.CUSTODIAN]),
        "auditor": UserFactory(username="auditor-live", roles=[Role.AUDITOR]),
        "patient": people["patient_user"],
        "clinician": people["clinician"],
    }
    tokens = {role: Token.objects.create(user=user).key for role, user in users.items()}

    # Ingest, and the patient reading the record back (decrypted in the web process).
    status, body = http("post", "/api/records/", token=tokens["custodian"], body=seeded_bundle())
    assert status == 201, body
    [record] = json.loads(body)["records"]
    patient = Patient.objects.get(pseudonym=record["patient_pseudonym"])
    patient_link_user(patient=patient, user=users["patient"])
    status, body = http("get", f"/api/records/{record['record_id']}/", token=tokens["patient"])
    assert (status, b"Zebulon" in body) == (200, True)  # the values are really there to leak

    # Consent, then the analysis, run by the workers; the clinician reads the decrypted results.
    grant = consent_api_body(consent_terms(users["clinician"]))
    status, body = http("post", "/api/consents/sign-request/", token=tokens["patient"], body=grant)
    assert status == 200, body
    document = json.loads(body)["document"]
    signed = {"document": document, "signature": passkey_of(patient).sign(document)}
    status, body = http("post", "/api/consents/", token=tokens["patient"], body=signed)
    assert status == 201, body
    status, body = http(
        "post",
        "/api/analyses/",
        token=tokens["clinician"],
        body={"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [patient.pseudonym]}},
    )
    assert status == 201, body
    analysis_id = json.loads(body)["id"]
    deadline = time.monotonic() + 180
    while (detail := json.loads(http("get", f"/api/analyses/{analysis_id}/", token=tokens["clinician"])[1]))[
        "status"
    ] not in ("completed", "failed"):
        assert time.monotonic() < deadline, detail
        time.sleep(0.5)
    assert detail["status"] == AnalysisStatus.COMPLETED, detail
    status, body = http("get", f"/api/analyses/{analysis_id}/results/", token=tokens["clinician"])
    [row] = json.loads(body)["rows"]

    # Values where a client may put them: query strings of real endpoints (the portal's and the API's), a
    # path, and every bad request of test_error_responses_never_echo_submitted_values.
    values_in_urls = [
        ("patient", f"/api/records/?category=imaging&note={NOTE}&phone={PHONE}"),
        ("auditor", f"/api/audit/events/?patient={IDENTIFIER}&grantee={NAME}"),
        ("auditor", f"/audit/?patient={IDENTIFIER}&name={NAME}&born={BIRTH_DATE}"),
        ("clinician", f"/api/models/breast-cancer/?version={FEATURE_VALUE}&why={NOTE}"),
        ("patient", f"/api/records/{IDENTIFIER}/{NAME}/"),
    ]
    for role, url in values_in_urls:
        status, _ = http("get", url, token=tokens[role])
        assert status < 500, url
    for role, method, url, body, content_type in bad_requests(grant["grantee"]):
        status, answer = http(
            method,
            url,
            token=tokens.get(role),
            body=body.encode() if isinstance(body, str) else None,
            content_type=content_type,
        )
        assert 400 <= status < 500, (method, url, status)
        assert_absent(answer.decode(errors="replace"), health_values(), f"{method.upper()} {url}")

    outputs = {
        "the web server's output": web.output(),
        "the custodian worker's log": custodian_worker.log_path.read_text(errors="replace"),
        "the compute worker's log": compute_worker.log_path.read_text(errors="replace"),
    }
    # The capture works: each process's output holds its own lines.
    assert '"POST /api/records/ HTTP/1.1" 201' in outputs["the web server's output"]
    assert '"GET /api/audit/' in outputs["the web server's output"]
    assert "analytics.tasks.analysis_batch_gate" in outputs["the custodian worker's log"]
    assert "analytics.compute" in outputs["the compute worker's log"]
    for where, text in outputs.items():
        assert_absent(text, as_sent_in_a_url({**health_values(), "the decrypted score": repr(row["score"])}), where)
        assert_absent(text, key_material(), where)
