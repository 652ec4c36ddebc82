"""The analytics API: model cards, the analysis request endpoints, who may call what, and bad input."""

import base64
import json

import pytest
from rest_framework.test import APIClient

from analytics.api import ResultRowsPagination
from analytics.diagnostic_models import all_models, breast_cancer_model
from analytics.models import AnalysisRequest, AnalysisStatus
from analytics.services import analysis_request_create
from health_platform.roles import Role
from tests.clients import api_as
from tests.records.factories import UserFactory

ANALYSES = "/api/analyses/"
MODELS = "/api/models/"
VALID_PSEUDONYM = "ab" * 32


@pytest.fixture
def no_role_user(db):
    return UserFactory(username="nobody")


def stored_files(blob_dir):
    return sorted(p.relative_to(blob_dir) for p in blob_dir.rglob("*") if p.is_file()) if blob_dir.exists() else []


# --- model cards ---------------------------------------------------------------------------------


def test_model_cards_describe_each_registered_model_and_its_anchor(clinician, models_registered, ledger):
    response = api_as(clinician).get(MODELS)

    assert response.status_code == 200
    cards = {card["name"]: card for card in response.json()}
    assert set(cards) == {spec.name for spec in all_models()}
    card = cards["breast-cancer"]
    spec = breast_cancer_model()
    assert (card["version"], card["kind"], card["available"]) == ("1", "logistic", True)
    assert (card["purpose"], card["category"]) == ("diagnostic-model:breast-cancer", "imaging")
    assert card["sha256"] == spec.sha256 == models_registered["breast-cancer"].sha256
    assert [f["code"] for f in card["features"]] == list(spec.feature_codes)
    assert card["features"][0] == {
        "code": "bc-mean-radius",
        "display": card["features"][0]["display"],
        "unit": "[arb'U]",
    }
    assert card["features"][0]["display"].startswith("Nucleus radius")
    assert card["metrics"]["accuracy"] == pytest.approx(spec.metrics["accuracy"])
    assert (card["positive_label"], card["negative_label"]) == ("malignant", "benign")
    location = ledger.locate(card["anchor"]["tx_id"])
    assert location is not None
    assert card["anchor"]["block"] == location.block_number
    assert card["links"]["portal"] == "/analytics/models/breast-cancer/"

    one = api_as(clinician).get(f"{MODELS}diabetes-progression/")
    assert (one.status_code, one.json()["kind"], one.json()["category"]) == (200, "linear", "laboratory")
    assert api_as(clinician).get(f"{MODELS}no-such-model/").json()["code"] == "not_found"
    assert api_as(clinician).get(f"{MODELS}breast-cancer/", {"version": "9"}).status_code == 404


def test_a_model_whose_weights_no_longer_match_the_anchor_is_shown_unavailable(clinician, models_registered):
    models_registered["breast-cancer"].__class__.objects.filter(name="breast-cancer").update(sha256="0" * 64)

    card = api_as(clinician).get(f"{MODELS}breast-cancer/").json()

    assert (card["available"], card["unavailable_code"], card["sha256"]) == (False, "model_hash_mismatch", "0" * 64)
    assert card["features"] == []


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("no_role_user", 403), ("patient_user", 200), ("auditor", 200), ("clinician", 200)],
)
def test_model_cards_are_readable_by_every_role_and_nobody_else(request, models_registered, who, status):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    for url in (MODELS, f"{MODELS}breast-cancer/"):
        response = api_as(user).get(url)
        assert response.status_code == status, url
        if status != 200:
            assert response.json()["code"] in ("not_authenticated", "permission_denied")


# --- who may see which request -------------------------------------------------------------------


@pytest.mark.he
@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("anonymous", 401, "not_authenticated"),
        ("patient_user", 403, "permission_denied"),
        ("auditor", 403, "permission_denied"),
        ("no_role_user", 403, "permission_denied"),
        ("other_clinician", 404, "not_found"),
        ("clinician", 200, None),
    ],
)
def test_a_request_and_its_results_are_its_requesters_alone(request, carols_request, who, status, code):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    base = f"{ANALYSES}{carols_request.id}/"
    for url in (base, f"{base}results/", f"{base}encrypted-scores/"):
        response = api_as(user).get(url)
        assert response.status_code == status, url
        if code:
            assert response.json()["code"] == code
            assert str(carols_request.id) not in response.content.decode()


@pytest.mark.he
@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("patient_user", 403), ("auditor", 403), ("other_clinician", 200), ("clinician", 200)],
)
def test_listing_shows_a_clinician_only_their_own_requests(request, carols_request, who, status):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    response = api_as(user).get(ANALYSES)
    assert response.status_code == status
    if status == 200:
        ids = [row["id"] for row in response.json()["results"]]
        assert ids == ([str(carols_request.id)] if who == "clinician" else [])


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("anonymous", 401, "not_authenticated"), ("patient_user", 403, "permission_denied"), ("auditor", 403, None)],
)
def test_only_clinicians_request_analyses(request, models_registered, blob_dir, who, status, code):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    body = {"model": "breast-cancer", "cohort": {"kind": "consented"}}
    response = api_as(user).post(ANALYSES, body, format="json")
    assert response.status_code == status
    assert response.json()["code"] == (code or "permission_denied")
    assert AnalysisRequest.objects.count() == 0
    assert stored_files(blob_dir) == []


def test_a_bad_token_is_401_with_a_challenge(models_registered):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(ANALYSES)
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.he
def test_a_clinician_role_without_a_clinician_profile_cannot_request(models_registered, blob_dir):
    half = UserFactory(username="dr-half", roles=[Role.CLINICIAN])
    response = api_as(half).post(ANALYSES, {"model": "breast-cancer", "cohort": {"kind": "consented"}}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert AnalysisRequest.objects.count() == 0


# --- creating, following, reading ----------------------------------------------------------------


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_a_portal_mode_request_is_created_runs_and_its_results_cite_the_model_hash(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    people = consented(4, not_consenting=1)

    response = api_as(clinician).post(
        ANALYSES,
        {"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [p.pseudonym for _, p, _ in people]}},
        format="json",
    )

    assert response.status_code == 201
    created = response.json()
    assert response["Location"] == f"{ANALYSES}{created['id']}/"
    assert (created["key_mode"], created["cohort_kind"], created["cohort_size"]) == ("portal", "explicit", 4)
    assert created["model"]["sha256"] == breast_cancer_model().sha256
    assert set(created["links"]) == {"self", "model", "portal", "encrypted_scores", "results"}
    assert "cohort_pseudonyms" not in created

    detail = api_as(clinician).get(created["links"]["self"]).json()
    assert detail["status"] == AnalysisStatus.COMPLETED
    assert detail["progress"] == {
        "total": 4,
        "gated": 4,
        "admitted": 3,
        "refused": 1,
        "refusals": {"no_consent": 1},
        "scored": 3,
        "batches": 1,
        "batches_done": 1,
    }

    results = api_as(clinician).get(created["links"]["results"]).json()
    spec = breast_cancer_model()
    assert results["model"] == {"name": "breast-cancer", "version": "1", "kind": "logistic", "sha256": spec.sha256}
    assert sorted(row["record_id"] for row in results["rows"]) == sorted(str(r.id) for _, _, r in people[:3])
    assert {row["patient_pseudonym"] for row in results["rows"]} == {p.pseudonym for _, p, _ in people[:3]}
    assert all(0 <= row["score"] <= 1 and row["label"] in ("malignant", "benign") for row in results["rows"])
    assert results["summary"]["count"] == 3
    assert sum(b["count"] for b in results["histogram"]) == 3
    assert (results["histogram"][0]["start"], results["histogram"][-1]["end"]) == (0.0, pytest.approx(1.0))
    assert results["refusals"] == {"no_consent": 1}

    encrypted = api_as(clinician).get(created["links"]["encrypted_scores"]).json()
    (chunk,) = encrypted["chunks"]
    assert sorted(chunk["record_ids"]) == sorted(row["record_id"] for row in results["rows"])
    assert len(base64.b64decode(chunk["ciphertext"])) > 1000
    assert encrypted["model"]["positive_label"] == "malignant"

    # Rows a page at a time (10,000 a page; 2 here): the summary and histogram over every row on each page.
    monkeypatch.setattr(ResultRowsPagination, "page_size", 2)
    first = api_as(clinician).get(created["links"]["results"]).json()
    second = api_as(clinician).get(first["next"]).json()
    assert (first["count"], len(first["rows"]), first["previous"]) == (3, 2, None)
    assert (second["count"], len(second["rows"]), second["next"]) == (3, 1, None)
    assert first["rows"] + second["rows"] == results["rows"]
    assert first["summary"] == second["summary"] == results["summary"]
    for page in ("3", "0", "x"):
        past = api_as(clinician).get(created["links"]["results"], {"page": page})
        assert (past.status_code, past.json()["code"]) == (404, "not_found")


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_a_failed_request_reports_its_failure_code(clinician, models_registered, blob_dir, ledger_gone_after_consent):
    ledger_gone_after_consent()

    created = api_as(clinician).post(
        ANALYSES, {"model": "breast-cancer", "cohort": {"kind": "consented"}}, format="json"
    )

    detail = api_as(clinician).get(created.json()["links"]["self"]).json()
    assert (detail["status"], detail["failure_code"]) == ("failed", "ledger_unavailable")
    assert detail["progress"]["scored"] == 0
    assert api_as(clinician).get(f"{ANALYSES}?status=failed").json()["count"] == 1


@pytest.mark.he
def test_the_list_filters_by_status_and_model(clinician, models_registered, blob_dir, queued):
    first = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    analysis_request_create(requester=clinician, model_name="diabetes-progression", cohort_kind="consented")
    AnalysisRequest.objects.filter(pk=first.pk).update(status=AnalysisStatus.COMPLETED)

    def ids(**params):
        return [row["model"]["name"] for row in api_as(clinician).get(ANALYSES, params).json()["results"]]

    assert ids() == ["diabetes-progression", "breast-cancer"]
    assert ids(status="completed") == ["breast-cancer"]
    assert ids(status="queued", model="diabetes-progression") == ["diabetes-progression"]
    assert ids(model="no-such") == []
    assert api_as(clinician).get(ANALYSES, {"status": "nonsense"}).json()["code"] == "validation_failed"


def test_a_malformed_id_is_404(clinician, models_registered):
    assert api_as(clinician).get(f"{ANALYSES}not-a-uuid/").status_code == 404
    assert api_as(clinician).get(f"{ANALYSES}{'0' * 32}/").json()["code"] == "not_found"


# --- bad input: each refused with its code, nothing stored ---------------------------------------

GOOD = {"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [VALID_PSEUDONYM]}}


def explicit_cohort_of(size: int) -> dict:
    """GOOD, its cohort `size` distinct well-formed pseudonyms."""
    return {**GOOD, "cohort": {"kind": "explicit", "pseudonyms": [f"{i:064x}" for i in range(size)]}}


@pytest.mark.he
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ([GOOD], 400, "validation_failed"),
        ({"cohort": {"kind": "consented"}}, 400, "validation_failed"),
        ({**GOOD, "model": "x" * 65}, 400, "validation_failed"),
        ({**GOOD, "model": "no-such-model"}, 400, "unknown_model"),
        ({**GOOD, "cohort": {"kind": "everyone"}}, 400, "validation_failed"),
        ({**GOOD, "cohort": "consented"}, 400, "validation_failed"),
        ({**GOOD, "cohort": {"kind": "explicit"}}, 400, "invalid_cohort"),
        ({**GOOD, "cohort": {"kind": "explicit", "pseudonyms": []}}, 400, "invalid_cohort"),
        ({**GOOD, "cohort": {"kind": "explicit", "pseudonyms": VALID_PSEUDONYM}}, 400, "validation_failed"),
        (
            {**GOOD, "cohort": {"kind": "explicit", "pseudonyms": ["not-hex", VALID_PSEUDONYM, 7]}},
            400,
            "invalid_cohort",
        ),
        ({**GOOD, "cohort": {"kind": "explicit", "pseudonyms": [VALID_PSEUDONYM.upper()]}}, 400, "invalid_cohort"),
        ({**GOOD, "cohort": {"kind": "consented", "pseudonyms": [VALID_PSEUDONYM]}}, 400, "validation_failed"),
        ({**GOOD, "batch_size": 0}, 400, "validation_failed"),
        ({**GOOD, "batch_size": 10**9}, 400, "invalid_batch_size"),
        ({**GOOD, "batch_size": "many"}, 400, "validation_failed"),
        ({**GOOD, "key_mode": "escrow"}, 400, "validation_failed"),
        ({**GOOD, "public_context": "AAAA"}, 400, "validation_failed"),
        ({**GOOD, "key_mode": "requester"}, 400, "public_context_missing"),
        ({**GOOD, "key_mode": "requester", "public_context": "not base64 at all!"}, 400, "public_context_invalid"),
        (
            {**GOOD, "key_mode": "requester", "public_context": base64.b64encode(b"\x00garbage" * 100).decode()},
            400,
            "public_context_invalid",
        ),
        (
            {**GOOD, "key_mode": "requester", "public_context": "A" * (4 * 1024 * 1024 + 4)},
            413,
            "public_context_too_large",
        ),
    ],
)
def test_each_bad_request_gets_its_status_and_code_and_nothing_is_stored(
    clinician, models_registered, blob_dir, queued, body, status, code
):
    response = api_as(clinician).post(ANALYSES, body, format="json")

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert AnalysisRequest.objects.count() == 0
    assert stored_files(blob_dir) == []
    assert VALID_PSEUDONYM not in response.content.decode()  # no submitted value is echoed


def test_bad_pseudonyms_are_named_by_their_position_not_their_value(clinician, models_registered, blob_dir):
    body = {
        **GOOD,
        "cohort": {"kind": "explicit", "pseudonyms": [VALID_PSEUDONYM, "secret-name", VALID_PSEUDONYM[:-1]]},
    }
    response = api_as(clinician).post(ANALYSES, body, format="json")
    assert response.json()["detail"] == {"field": "pseudonyms", "indexes": [1, 2]}
    assert "secret-name" not in response.content.decode()


def test_malformed_json_is_refused_with_a_code(clinician, models_registered, blob_dir):
    response = api_as(clinician).post(ANALYSES, b'{"model": "breast-cancer", ', content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")
    assert AnalysisRequest.objects.count() == 0


def test_only_json_is_accepted(clinician, models_registered, blob_dir):
    response = api_as(clinician).post(ANALYSES, {"model": "breast-cancer"})  # multipart form
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


def test_a_cohort_over_the_limit_is_refused(clinician, models_registered, blob_dir, settings):
    settings.ANALYTICS_MAX_COHORT = 3
    response = api_as(clinician).post(ANALYSES, explicit_cohort_of(4), format="json")
    assert (response.status_code, response.json()["code"]) == (400, "cohort_too_large")
    assert AnalysisRequest.objects.count() == 0
    assert stored_files(blob_dir) == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(clinician, models_registered, blob_dir, settings):
    settings.ANALYTICS_REQUEST_MAX_BYTES = 1000
    response = api_as(clinician).post(ANALYSES, explicit_cohort_of(20), format="json")
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert response.json()["detail"] == {"max_bytes": 1000}
    assert AnalysisRequest.objects.count() == 0


@pytest.mark.he
def test_the_largest_cohort_is_accepted_though_its_body_exceeds_djangos_form_limit(
    clinician, models_registered, blob_dir, settings, queued
):
    body = json.dumps(explicit_cohort_of(settings.ANALYTICS_MAX_COHORT))
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = api_as(clinician).post(ANALYSES, body, content_type="application/json")

    assert response.status_code == 201
    assert response.json()["cohort_size"] == settings.ANALYTICS_MAX_COHORT


def test_the_endpoints_are_in_the_openapi_schema(client):
    schema = client.get("/api/schema/").content.decode()
    for path in (
        "/api/models/:",
        "/api/models/{name}/:",
        "/api/analyses/:",
        "/api/analyses/{id}/:",
        "/api/analyses/{id}/results/:",
        "/api/analyses/{id}/encrypted-scores/:",
    ):
        assert path in schema
    assert "secret_key_uploaded" in schema
