"""No single process death stalls an analysis: a pool process killed while idle, a custodian worker killed
whole (main process and pool) and started again, or killed with another worker still running. On the
embedded default's filesystem broker and on a durable Redis, with real workers and real kills (SIGKILL).

What a dead worker had taken is delivered again by the broker (health_platform.filesystem_broker and
health_platform.redis_broker: a live worker of the host puts back what a dead process held, at its start
and every few seconds), and every step is claimed, so nothing is logged or scored twice."""

import os
import signal
import time

import pytest

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.services import analysis_request_create
from benchmarks.faults import child_pids
from tests.reliability.conftest import assert_done_once, kill_group, wait_until_finished

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 12, 2
MID_BATCH = (BatchStatus.GATED, BatchStatus.LOGGED)
WITHIN = 60  # seconds: the longest any single process death may hold an analysis up


def _request(clinician):
    return analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=BATCH_SIZE
    )


def _freeze_mid_batch(analysis, worker) -> None:
    """Stop (SIGSTOP) the worker's processes while one of its batches is between its gate and its encryption:
    the worker then holds that task's message (and whatever it reserved) and does nothing more with it."""
    deadline = time.monotonic() + 60
    while not AnalysisBatch.objects.filter(request=analysis, status__in=MID_BATCH).exists():
        assert time.monotonic() < deadline, "no batch was caught between its gate and its encryption"
        time.sleep(0.002)
    os.killpg(worker.pid, signal.SIGSTOP)
    assert AnalysisBatch.objects.filter(request=analysis).exclude(status=BatchStatus.SCORED).exists()


def test_an_idle_pool_process_killed_leaves_the_worker_taking_work(
    either_broker, consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    """With kombu's filesystem transport the worker ran Celery's synchronous loop over billiard's shared queue,
    and a pool process killed while it waited there could keep the queue's lock: every later task was received
    and never run. The worker now runs its asynchronous pool, which replaces the dead process."""
    people = consented(RECORDS)
    custodian = spawn_worker(queues="custodian", concurrency=2)
    start_compute_worker()
    first = _request(clinician)
    assert wait_until_finished(first.id) == AnalysisStatus.COMPLETED
    time.sleep(0.5)  # both pool processes back to waiting for work
    idle = child_pids(custodian.pid)
    assert len(idle) == 2
    os.kill(idle[0], signal.SIGKILL)

    started = time.monotonic()
    second = _request(clinician)

    assert wait_until_finished(second.id, timeout=WITHIN) == AnalysisStatus.COMPLETED
    assert time.monotonic() - started < WITHIN
    assert custodian.poll() is None, "the worker itself died"
    assert idle[0] not in child_pids(custodian.pid)
    assert_done_once(second, people, ledger, clinician)


def test_a_custodian_worker_killed_whole_and_started_again_finishes_within_a_minute_of_the_restart(
    either_broker, consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    """The worker's main process dies with the messages it had taken (running and reserved): the broker gives
    them back when a worker starts again, not at the fifteen-minute stalled-work sweep."""
    people = consented(RECORDS)
    first_life = spawn_worker(queues="custodian", concurrency=1)
    start_compute_worker()
    analysis = _request(clinician)
    _freeze_mid_batch(analysis, first_life)
    kill_group(first_life)
    first_life.wait(timeout=10)

    restarted = time.monotonic()
    spawn_worker(queues="custodian", concurrency=1)

    assert wait_until_finished(analysis.id, timeout=WITHIN) == AnalysisStatus.COMPLETED
    assert time.monotonic() - restarted < WITHIN
    assert_done_once(analysis, people, ledger, clinician)


def test_what_a_worker_killed_whole_held_goes_to_another_live_worker_within_a_minute(
    either_broker, consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    """Nothing is restarted: the other custodian worker puts back what the dead one held and does it. The dead
    worker is frozen holding a running batch before the other starts, so that the other cannot have taken it."""
    people = consented(RECORDS)
    doomed = spawn_worker(queues="custodian", concurrency=1)
    start_compute_worker()
    analysis = _request(clinician)
    _freeze_mid_batch(analysis, doomed)
    survivor = spawn_worker(queues="custodian", concurrency=1)
    killed = time.monotonic()
    kill_group(doomed)
    doomed.wait(timeout=10)

    assert wait_until_finished(analysis.id, timeout=WITHIN) == AnalysisStatus.COMPLETED
    assert time.monotonic() - killed < WITHIN
    assert survivor.poll() is None
    assert_done_once(analysis, people, ledger, clinician)
