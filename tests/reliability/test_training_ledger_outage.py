"""A training run meets a ledger outage in a real Celery worker: it waits in the queue, trains nothing while the
ledger is away, and completes by itself once the ledger is back; past its deadline it fails closed.

The fault is the one tests/reliability/test_ledger_outage.py makes: the worker reaches the embedded ledger through a
path repointed where nothing can be opened (--max-tasks-per-child 1: each attempt opens the ledger afresh)."""

import pytest

from analytics.models import DiagnosticModel
from audit.models import AccessEvent
from health_platform import bootstrap
from tests.conftest import wait_for
from tests.reliability.conftest import LedgerMount
from tests.training.conftest import (  # noqa: F401 (fixtures)
    organisations,
    people,
    steward,
)
from tests.training_world import candidates, consented_breast_cancer_split
from training.models import TrainingRun, TrainingStatus
from training.services import training_run_request

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def run_in_outage(people, organisations, steward, spawn_worker, tmp_path, ledger):  # noqa: F811
    def start(*, deadline_seconds: int):
        """Cut the ledger, start a custodian worker reaching it through the cut path, and ask for a run of two
        rounds over four consented patients, two per organisation."""
        split = consented_breast_cancer_split(people, organisations, 4)
        mount = LedgerMount(tmp_path, ledger)
        mount.cut()
        worker = mount.worker(
            spawn_worker,
            TRAINING_RUN_DEADLINE_SECONDS=str(deadline_seconds),
            ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS="2",
        )
        run = training_run_request(
            steward=steward,
            family="breast-cancer",
            organisations=candidates(split),
            rounds=2,
        )
        return run, mount, worker

    return start


def _status(run) -> TrainingRun:
    return TrainingRun.objects.get(pk=run.pk)


def test_a_run_waits_out_a_ledger_outage_and_completes_by_itself_once_the_ledger_is_back(run_in_outage):
    run, mount, worker = run_in_outage(deadline_seconds=600)
    wait_for(lambda: _status(run).attempts >= 2, timeout=120, what="the run to meet the outage twice")
    waiting = _status(run)
    assert waiting.status in (TrainingStatus.QUEUED, TrainingStatus.RUNNING)
    assert (waiting.outcome, waiting.manifest, waiting.failure_code) == ({}, {}, "")
    assert not waiting.rounds.exists()
    assert b"training_run_ledger_wait" in worker.log_path.read_bytes()

    mount.restore()
    wait_for(
        lambda: _status(run).status != TrainingStatus.QUEUED and _status(run).finished_at,
        timeout=180,
        what="the run to finish",
    )
    done = _status(run)
    assert done.status == TrainingStatus.COMPLETED, done.failure_code
    assert bootstrap.contracts().read_training_run(str(run.pk)).weights_sha256 == done.weights_sha256
    assert DiagnosticModel.objects.filter(name=done.model_name, version=done.model_version).exists()
    # trained once, after the outage: every record logged once per round
    assert AccessEvent.objects.filter(request_id=str(run.pk), kind="record_access").count() == 4 * 2


def test_a_run_still_without_a_ledger_at_its_deadline_fails_closed_by_itself(run_in_outage):
    run, mount, _ = run_in_outage(deadline_seconds=4)
    wait_for(lambda: _status(run).status == TrainingStatus.FAILED, timeout=120, what="the run to fail")
    mount.restore()
    failed = _status(run)
    assert failed.failure_code == "ledger_unavailable"
    assert failed.attempts >= 1
    assert not failed.rounds.exists()
    assert bootstrap.contracts().read_training_run(str(run.pk)) is None
    assert not DiagnosticModel.objects.filter(name="breast-cancer").exists()
