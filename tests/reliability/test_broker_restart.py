"""The broker restarts in the middle of an analysis: the real redis-server is killed and started
again on the same port, with the append-only file a durable production broker keeps. The workers
reconnect and the job completes, each record logged and scored once."""

import time

import pytest

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.services import analysis_request_create
from tests.reliability.conftest import assert_done_once, wait_until_finished, wait_until_gating_began

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 8, 2


def test_a_redis_restart_mid_job_lets_the_job_complete_once(
    durable_redis, consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    people = consented(RECORDS)
    custodian = spawn_worker(queues="custodian")
    compute = start_compute_worker()
    analysis = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=BATCH_SIZE
    )
    wait_until_gating_began(analysis)

    durable_redis.kill()
    unfinished = AnalysisBatch.objects.filter(request=analysis).exclude(status=BatchStatus.SCORED).count()
    assert unfinished, "the job finished before the broker went down: the fault came too late"
    time.sleep(3)
    durable_redis.start()

    assert wait_until_finished(analysis.id, timeout=150) == AnalysisStatus.COMPLETED
    for worker in (custodian, compute):
        assert "Connection to broker lost" in worker.log_path.read_text() or "Cannot connect" in (
            worker.log_path.read_text()
        )
    assert_done_once(analysis, people, ledger, clinician)
