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
from audit.models import AccessEvent
from health_platform import bootstrap
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET, load_dataset
from tests.clients import signed_in
from tests.training.factories import TrainingRunFactory
from tests.training_world import (
    candidates,
    consent_to_analyses,
    consent_to_training,
    consented_breast_cancer_split,
    trained_with,
)
from training import rounds
from training.local import TRAIN
from training.models import TrainingRun, TrainingStatus
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
    run, trained = trained_with(steward, "diabetes-progression", split)
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
    consent_to_analyses(clinician, scored)
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


def _small_run(people, organisations, steward):
    split = consented_breast_cancer_split(people, organisations, 4)
    return training_run_request(steward=steward, family="breast-cancer", organisations=candidates(split), rounds=2)


def _nothing_written(run) -> None:
    assert not run.rounds.exists()
    assert not DiagnosticModel.objects.filter(name="breast-cancer").exists()
    assert bootstrap.contracts().read_training_run(str(run.pk)) is None


def test_a_run_the_ledger_does_not_answer_waits_in_the_queue_trains_nothing_then_completes_once_it_is_back(
    people, organisations, steward, blob_dir, ledger_switch
):
    run = _small_run(people, organisations, steward)
    ledger_switch.down()
    for attempt in (1, 2):
        run = training_run_execute(run_id=str(run.pk))
        assert (run.status, run.attempts, run.failure_code) == (TrainingStatus.QUEUED, attempt, "")
        assert run.outcome == {}
        assert run.manifest == {}
    ledger_switch.up()
    _nothing_written(run)
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    assert bootstrap.contracts().read_training_run(str(run.pk)).weights_sha256 == run.weights_sha256
    assert DiagnosticModel.objects.filter(name="breast-cancer", version=run.model_version).exists()


def test_a_run_fails_closed_with_ledger_unavailable_once_its_deadline_has_passed(
    people, organisations, steward, blob_dir, ledger_switch, settings
):
    run = _small_run(people, organisations, steward)
    settings.TRAINING_RUN_DEADLINE_SECONDS = 1  # the next wait (2 s) would end past it
    ledger_switch.down()
    run = training_run_execute(run_id=str(run.pk))
    ledger_switch.up()
    assert (run.status, run.failure_code) == (TrainingStatus.FAILED, "ledger_unavailable")
    _nothing_written(run)
    assert training_run_execute(run_id=str(run.pk)) is None  # failed is final


def test_a_run_interrupted_at_its_lineage_resumes_there_without_reading_a_record_again(
    people, organisations, steward, blob_dir, ledger_switch, monkeypatch
):
    run = _small_run(people, organisations, steward)
    write_lineage = rounds._lineage_record

    def ledger_gone_at_the_lineage(*args, **kwargs):
        ledger_switch.down()
        return write_lineage(*args, **kwargs)

    monkeypatch.setattr(rounds, "_lineage_record", ledger_gone_at_the_lineage)
    run = training_run_execute(run_id=str(run.pk))
    assert (run.status, run.attempts) == (TrainingStatus.QUEUED, 1)
    assert set(run.outcome) == {"weights", "bias", "metrics", "round_hashes", "dp_epsilon", "dp_delta"}
    assert run.rounds.count() == 2
    accesses = AccessEvent.objects.filter(request_id=str(run.pk)).count()
    assert accesses == 4 * 2  # every record, every round

    monkeypatch.setattr(rounds, "_lineage_record", write_lineage)
    ledger_switch.up()
    run = training_run_execute(run_id=str(run.pk))
    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    assert AccessEvent.objects.filter(request_id=str(run.pk)).count() == accesses  # not trained again
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    assert list(lineage.round_aggregates) == run.outcome["round_hashes"]
    assert lineage.weights_sha256 == run.weights_sha256
    assert model_spec(DiagnosticModel.objects.get(name=run.model_name, version=run.model_version)).weights == tuple(
        run.outcome["weights"]
    )


def test_the_sweep_sends_again_a_run_whose_message_was_lost_and_revives_one_whose_worker_died(
    people, organisations, steward, blob_dir
):
    lost = _small_run(people, organisations, steward)
    dead, fresh = TrainingRunFactory.create_batch(2, steward=steward, status=TrainingStatus.RUNNING)
    long_ago = timezone.now() - timedelta(hours=2)
    TrainingRun.objects.filter(pk=lost.pk).update(created_at=long_ago)
    TrainingRun.objects.filter(pk=dead.pk).update(claimed_at=long_ago)
    TrainingRun.objects.filter(pk=fresh.pk).update(claimed_at=timezone.now())
    stalled = rounds.training_runs_stalled(queued_for=timedelta(minutes=15), running_for=timedelta(hours=1))
    assert sorted(stalled) == sorted([str(lost.pk), str(dead.pk)])
    assert TrainingRun.objects.get(pk=dead.pk).status == TrainingStatus.QUEUED
    assert TrainingRun.objects.get(pk=fresh.pk).status == TrainingStatus.RUNNING
    # revived once: the next sweep finds it queued and recently moved, and sends nothing
    assert rounds.training_runs_stalled(queued_for=timedelta(minutes=15), running_for=timedelta(hours=1)) == [
        str(lost.pk)
    ]
