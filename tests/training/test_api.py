"""The training API: a model steward requests runs over the organisations' offer and reads them; strict input; every
other role refused; another steward's run not shown to exist."""

import json

import pytest

from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from tests.clients import api_as
from tests.conftest import tamper_with
from tests.records.factories import UserFactory
from tests.training.factories import TrainingRunFactory
from tests.training_world import consent_to_training, model_steward
from training.models import TrainingRun, TrainingStatus
from training.services import MAX_ROUNDS, training_run_execute

RUNS = "/api/training/runs/"
HOSTILE = "<script>" + "x" * 1000


def run_of(steward, **fields):
    """A run row as a request leaves it (its keys aside: these tests never run it)."""
    return TrainingRunFactory(steward=steward, **fields)


@pytest.fixture
def offered(people, organisations):
    """Four breast-cancer patients consented to training, two per organisation; a diabetes patient too."""
    everyone = people(BREAST_CANCER_DATASET, 4)
    for index, person in enumerate(everyone):
        consent_to_training(person, organisations[index % 2], BREAST_CANCER_DATASET)
    consent_to_training(people(DIABETES_DATASET, 1)[0], organisations[0], DIABETES_DATASET)
    return everyone


# --- strict input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 400, "validation_failed", "family"),
        ({"family": ""}, 400, "validation_failed", "family"),
        ({"family": True}, 400, "validation_failed", "family"),
        ({"family": ["breast-cancer"]}, 400, "validation_failed", "family"),
        ({"family": HOSTILE}, 400, "validation_failed", "family"),
        ({"family": "no-such-family"}, 400, "unknown_model", "family"),
        ({"family": "breast-cancer", "rounds": True}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": False}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": "3"}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": 3.0}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": 2.5}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": None}, 400, "validation_failed", "rounds"),
        ({"family": "breast-cancer", "rounds": 0}, 400, "invalid_rounds", "rounds"),
        ({"family": "breast-cancer", "rounds": -1}, 400, "invalid_rounds", "rounds"),
        ({"family": "breast-cancer", "rounds": MAX_ROUNDS + 1}, 400, "invalid_rounds", "rounds"),
        ({"family": "breast-cancer", "rounds": 10**40}, 400, "invalid_rounds", "rounds"),
        ({"family": "diabetes-progression", "rounds": 2}, 400, "invalid_rounds", "rounds"),
        ({"family": "breast-cancer", "ridge": True}, 400, "validation_failed", "ridge"),
        ({"family": "breast-cancer", "ridge": "1"}, 400, "validation_failed", "ridge"),
        ({"family": "breast-cancer", "ridge": {"value": 1}}, 400, "validation_failed", "ridge"),
        ({"family": "breast-cancer", "ridge": -0.5}, 400, "invalid_ridge", "ridge"),
        ({"family": "breast-cancer", "ridge": 1e300}, 400, "invalid_ridge", "ridge"),
        ({"family": "breast-cancer", "ridge": 10**400}, 400, "validation_failed", "ridge"),  # no float holds it
        ({"family": "breast-cancer", "validation_fraction": 0.9}, 400, "invalid_validation_fraction", None),
        ({"family": "breast-cancer", "validation_fraction": "0.1"}, 400, "validation_failed", "validation_fraction"),
        ({"family": "breast-cancer", "dp_epsilon": 1.0}, 400, "dp_budget_incomplete", "dp_delta"),
        ({"family": "breast-cancer", "dp_delta": 1e-5}, 400, "dp_budget_incomplete", "dp_epsilon"),
        ({"family": "breast-cancer", "dp_epsilon": 0, "dp_delta": 1e-5}, 400, "invalid_dp_epsilon", "dp_epsilon"),
        ({"family": "breast-cancer", "dp_epsilon": 101, "dp_delta": 1e-5}, 400, "invalid_dp_epsilon", "dp_epsilon"),
        ({"family": "breast-cancer", "dp_epsilon": 1, "dp_delta": 0.5}, 400, "invalid_dp_delta", "dp_delta"),
        ({"family": "breast-cancer", "dp_epsilon": True, "dp_delta": 1e-5}, 400, "validation_failed", "dp_epsilon"),
        ({"family": "breast-cancer", "dp_epsilon": "1", "dp_delta": 1e-5}, 400, "validation_failed", "dp_epsilon"),
        (
            {"family": "breast-cancer", "dp_epsilon": 1, "dp_delta": 1e-5, "dp_target_bound": 5},
            400,
            "invalid_dp_target_bound",
            "dp_target_bound",
        ),
        (
            {"family": "diabetes-progression", "dp_epsilon": 1, "dp_delta": 1e-5},
            400,
            "dp_target_bound_required",
            "dp_target_bound",
        ),
        ({"family": "breast-cancer", "organisations": {"org:x": [1]}}, 400, "unknown_fields", None),
        ({"family": "breast-cancer", HOSTILE: 1}, 400, "unknown_fields", None),
    ],
)
def test_a_request_that_is_not_a_runs_terms_is_refused_with_a_stable_code_and_nothing_is_stored(
    steward, offered, body, status, code, field
):
    response = api_as(steward).post(RUNS, body, format="json")

    assert (response.status_code, response.json()["code"]) == (status, code), response.json()
    if code == "validation_failed":
        assert set(response.json()["detail"]) == {field}
    elif field is not None:
        assert response.json()["detail"]["field"] == field
    assert "<script>" not in response.content.decode()  # no value or key sent is echoed
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"family": "breast-cancer", "ridge": NaN}', 400, "malformed_request"),
        (b'{"family": "breast-cancer", "ridge": Infinity}', 400, "malformed_request"),
        (b'{"family": "breast-cancer", "ridge": 1e999}', 400, "validation_failed"),  # reads as infinity
        (b'{"family": "breast-cancer"', 400, "malformed_request"),
        (b'["breast-cancer"]', 400, "validation_failed"),
        (b'"breast-cancer"', 400, "validation_failed"),
        (b'{"family": "breast-cancer\\u0000"}', 400, "malformed_request"),
        (b"[" * 500 + b"]" * 500, 400, "json_too_deep"),
        (json.dumps({"family": "breast-cancer", "note": "x" * 10_000}).encode(), 413, "payload_too_large"),
    ],
)
def test_a_body_that_is_not_json_an_object_or_of_a_sane_size_is_refused(steward, db, raw, status, code):
    response = api_as(steward).post(RUNS, raw, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not TrainingRun.objects.exists()


def test_with_no_live_training_consent_nothing_is_offered_and_no_run_is_stored(steward, people, organisations):
    everyone = people(BREAST_CANCER_DATASET, 2)
    consent_to_training(everyone[0], organisations[0], BREAST_CANCER_DATASET, purpose="diagnostic-model:breast-cancer")
    response = api_as(steward).post(RUNS, {"family": "breast-cancer"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "no_records_offered")
    assert not TrainingRun.objects.exists()


@pytest.mark.he
def test_a_steward_requests_a_run_over_the_organisations_offer(steward, offered, organisations, blob_dir):
    response = api_as(steward).post(RUNS, {"family": "breast-cancer", "rounds": 3, "ridge": 0.5}, format="json")

    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get()
    body = response.json()
    assert response["Location"] == body["links"]["self"] == f"{RUNS}{run.pk}/"
    assert body["links"]["portal"] == f"/training/{run.pk}/"
    assert (body["family"], body["kind"], body["status"], body["rounds_requested"]) == (
        "breast-cancer",
        "logistic",
        "queued",
        3,
    )
    terms = run.hyperparameters
    assert (run.steward, terms["ridge"], terms["validation_fraction"]) == (steward, 0.5, 0.2)
    st_marys, northgate = organisations
    assert run.organisations == {
        northgate: [offered[1].version_id, offered[3].version_id],
        st_marys: [offered[0].version_id, offered[2].version_id],
    }
    defaults = api_as(steward).post(RUNS, {"family": "diabetes-progression"}, format="json").json()
    assert (defaults["kind"], defaults["rounds_requested"], defaults["hyperparameters"]["ridge"]) == ("linear", 1, 0.0)
    private = {"family": "breast-cancer", "dp_epsilon": 4, "dp_delta": 1e-5}
    assert api_as(steward).post(RUNS, private, format="json").status_code == 201
    terms = TrainingRun.objects.filter(hyperparameters__has_key="dp_epsilon").get().hyperparameters
    assert (terms["dp_epsilon"], terms["dp_delta"], terms["dp_mechanism"]) == (4.0, 1e-5, "gaussian-zcdp")


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.CLINICIAN, Role.AUDITOR, Role.CUSTODIAN, None])
def test_every_other_role_is_refused_every_endpoint_and_nothing_is_stored(steward, role, offered):
    run = run_of(steward)
    user = UserFactory(username="someone-else", roles=[role] if role else [])
    client = api_as(user)
    for response in (
        client.get(RUNS),
        client.get(f"{RUNS}{run.pk}/"),
        client.post(RUNS, {"family": "breast-cancer"}, format="json"),
    ):
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert list(TrainingRun.objects.all()) == [run]


def test_anonymous_callers_are_asked_to_authenticate(steward, db):
    run = run_of(steward)
    for response in (api_as().get(RUNS), api_as().get(f"{RUNS}{run.pk}/"), api_as().post(RUNS, {}, format="json")):
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


@pytest.mark.parametrize("run_id", ["other", "00000000-0000-4000-8000-000000000000", "-" * 36, "f" * 32])
def test_another_stewards_run_is_answered_as_one_that_does_not_exist(steward, db, run_id):
    other = run_of(model_steward("steward-tom"))
    path = f"{RUNS}{other.pk if run_id == 'other' else run_id}/"
    response = api_as(steward).get(path)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert str(other.pk) not in response.content.decode()


def test_the_list_is_the_stewards_own_runs_newest_first_paginated(steward, db):
    mine = [run_of(steward) for _ in range(51)]
    run_of(model_steward("steward-tom"))

    first = api_as(steward).get(RUNS).json()
    assert first["count"] == 51
    assert [row["id"] for row in first["results"]] == [str(run.pk) for run in reversed(mine)][:50]
    second = api_as(steward).get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [str(mine[0].pk)]
    assert api_as(steward).get(RUNS, {"page": 9}).json()["code"] == "not_found"


# --- a run's detail ------------------------------------------------------------------------------


@pytest.mark.he
@pytest.mark.slow
def test_a_completed_runs_detail_has_its_rounds_counts_by_reason_and_lineage(steward, offered, organisations, blob_dir):
    tamper_with(offered[0].record)  # St Mary's: refused (hash_mismatch) at every round
    run_id = api_as(steward).post(RUNS, {"family": "breast-cancer", "rounds": 2}, format="json").json()["id"]
    queued = api_as(steward).get(f"{RUNS}{run_id}/").json()
    assert (queued["status"], queued["rounds"], queued["lineage"]) == ("queued", [], None)
    assert training_run_execute(run_id=run_id).status == TrainingStatus.COMPLETED

    body = api_as(steward).get(f"{RUNS}{run_id}/").json()

    run = TrainingRun.objects.get(pk=run_id)
    st_marys, northgate = organisations
    assert body["status"] == "completed"
    assert [(r["index"], r["aggregate_sha256"]) for r in body["rounds"]] == list(
        run.rounds.order_by("index").values_list("index", "aggregate_sha256")
    )
    for round_ in body["rounds"]:
        assert set(round_["contributions"]) == {st_marys, northgate}
    assert {o["organisation"]: (o["offered"], o["admitted"], o["refused"]) for o in body["organisations"]} == {
        st_marys: (2, 1, {"hash_mismatch": 1}),
        northgate: (2, 2, {}),
    }
    lineage = body["lineage"]
    assert (lineage["tx_id"], lineage["block_number"]) == (run.lineage_tx_id, run.lineage_block)
    assert (lineage["record_count"], lineage["weights_sha256"]) == (3, run.weights_sha256)
    assert lineage["model"] == {"name": "breast-cancer", "version": run.model_version}
    assert lineage["round_aggregates"] == [r["aggregate_sha256"] for r in body["rounds"]]
    assert {"training_set_root", "consent_root", "trainer_sha256", "metrics"} <= set(lineage)
    assert body["links"]["model"] == "/api/models/breast-cancer/"
