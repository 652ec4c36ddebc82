"""A trained model: its weights against central training in the clear, and its use in an analysis like any other."""

from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from sklearn.linear_model import LinearRegression

from analytics.models import AnalysisStatus, DiagnosticModel
from analytics.registry import model_spec
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from health_platform import bootstrap
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET, load_dataset
from tests.clients import signed_in
from tests.signing import grant_signed
from tests.training.conftest import consent_to_training, offered, split_consenting, trained_run
from training.local import TRAIN
from training.models import TrainingStatus
from training.services import training_run_execute, training_run_request

pytestmark = [pytest.mark.he, pytest.mark.slow]


def test_linear_weights_equal_central_least_squares_on_the_same_admitted_records(
    people, organisations, steward, blob_dir
):
    everyone = people(DIABETES_DATASET, 40)
    st_marys, northgate = organisations
    split = {st_marys: everyone[:20], northgate: everyone[20:]}
    for organisation, members in split.items():
        for person in members[:-1]:  # the last of each never consented: left out
            consent_to_training(person, organisation, DIABETES_DATASET)
    run, trained = trained_run(steward, "diabetes-progression", split)
    row_of = {str(p.record.id): p.row for p in everyone}
    entries = [e for organisation in sorted(run.manifest) for e in run.manifest[organisation]]
    assert len(entries) == 38
    rows = [row_of[e["record_id"]] for e in entries if e["split"] == TRAIN]
    data = load_dataset(DIABETES_DATASET)
    central = LinearRegression().fit(data.data[rows], data.target[rows])
    assert np.max(np.abs(np.asarray(trained.weights) - central.coef_)) < 1e-4
    assert abs(trained.bias - central.intercept_) < 1e-4
    assert trained.kind == "linear"
    assert trained.purpose == "diagnostic-model:diabetes-progression"
    assert set(run.hyperparameters) >= {"ridge", "validation_fraction"}
    assert "r2" in trained.metrics or trained.metrics["validation_records"] < 2


@pytest.mark.django_db(transaction=True)
def test_the_trained_model_scores_in_an_analysis_and_its_card_shows_its_lineage(
    eager, people, organisations, steward, blob_dir, clinician
):
    everyone = people(BREAST_CANCER_DATASET, 12)
    st_marys, northgate = organisations
    split = {st_marys: everyone[:6], northgate: everyone[6:]}
    for organisation, members in split.items():
        for person in members:
            consent_to_training(person, organisation, BREAST_CANCER_DATASET)
    run = training_run_request(  # eager: queued at commit, run at once by the task
        steward=steward,
        family="breast-cancer",
        organisations={org: [p.version_id for p in members] for org, members in split.items()},
        rounds=3,
    )
    run.refresh_from_db()
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    trained = model_spec(DiagnosticModel.objects.get(name="breast-cancer", version=run.model_version))

    scored = everyone[:3]
    for person in scored:
        grant_signed(
            actor=person.user,
            patient=person.patient,
            grantee_id=clinician.clinician_profile.grantee_id,
            purposes=["diagnostic-model:breast-cancer"],
            categories=["imaging"],
            valid_from=timezone.now(),
            valid_until=timezone.now() + timedelta(days=30),
        )
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    request.refresh_from_db()
    assert request.model.version == run.model_version  # the newest registered version serves new requests
    assert request.status == AnalysisStatus.COMPLETED
    results = analysis_results(request=request, viewer=clinician)
    data = load_dataset(BREAST_CANCER_DATASET)
    expected = {str(p.record.id): trained.interpret(trained.score_plain(data.data[[p.row]]))[0] for p in scored}
    assert {row.record_id for row in results.rows} == set(expected)
    for row in results.rows:
        assert row.label == expected[row.record_id]["label"]
        assert abs(row.score - expected[row.record_id]["score"]) < 1e-3

    page = signed_in(clinician).get(
        reverse("analytics:model-card", kwargs={"name": "breast-cancer"}), {"version": run.model_version}
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert f"data-lineage-run>{run.pk}<" in html
    assert run.lineage_tx_id in html
    assert "data-lineage-records>12<" in html


def test_a_run_fails_closed_when_the_ledger_does_not_answer_and_writes_no_lineage(
    people, organisations, steward, blob_dir, ledger_switch
):
    everyone = people(BREAST_CANCER_DATASET, 4)
    split = split_consenting(everyone, organisations, BREAST_CANCER_DATASET)
    run = training_run_request(
        steward=steward,
        family="breast-cancer",
        organisations=offered(split),
        rounds=2,
    )
    ledger_switch.down()
    run = training_run_execute(run_id=str(run.pk))
    ledger_switch.up()
    assert (run.status, run.failure_code) == (TrainingStatus.FAILED, "ledger_unavailable")
    assert not run.rounds.exists()
    assert not DiagnosticModel.objects.filter(name="breast-cancer").exists()
    assert bootstrap.contracts().read_training_run(str(run.pk)) is None
