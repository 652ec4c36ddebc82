"""A custodian worker's process is SIGKILLed in the middle of a batch: between the gate and the
encryption, after the access events went to the ledger. acks_late with reject-on-worker-lost puts
the message back; a new pool process redoes the batch from its stored state."""

import os
import re
import signal
import time

import pytest

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.services import analysis_request_create
from benchmarks.faults import child_pids
from tests.reliability.conftest import assert_done_once, wait_until_finished

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 12, 4
MID_BATCH = (BatchStatus.GATED, BatchStatus.LOGGED)


def _kill_mid_batch(request, custodian, timeout: float = 60) -> int:
    """SIGKILL the custodian's pool process as soon as a batch is between its gate and its encryption."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        caught = (
            AnalysisBatch.objects.filter(request=request, status__in=MID_BATCH).values_list("pk", flat=True).first()
        )
        if caught is not None:
            children = child_pids(custodian.pid)
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            assert children, "the worker had no pool process to kill"
            return caught
        time.sleep(0.005)
    pytest.fail("no batch was caught between its gate and its encryption")


def test_a_pool_process_killed_mid_batch_is_redone_and_nothing_is_logged_or_scored_twice(
    either_broker, consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    people = consented(RECORDS)
    custodian = spawn_worker(queues="custodian")
    start_compute_worker()
    analysis = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=BATCH_SIZE
    )

    killed_batch = _kill_mid_batch(analysis, custodian)

    assert wait_until_finished(analysis.id) == AnalysisStatus.COMPLETED
    log = custodian.log_path.read_text()
    assert "WorkerLostError" in log or "signal 9" in log, "the kill did not reach a running task"
    # The killed task's message went back to the queue and was delivered again: one receipt more than batches.
    batches = AnalysisBatch.objects.filter(request=analysis).count()
    assert _received(log, "analytics.tasks.analysis_batch_gate") >= batches + 1
    # One ledger transaction per batch, the killed one included (logged before the kill or after, once);
    # one set of scores: every record exactly once.
    assert_done_once(analysis, people, ledger, clinician)
    killed = AnalysisBatch.objects.get(pk=killed_batch)
    assert sum(len(chunk["record_ids"]) for chunk in killed.column_keys) == len(killed.record_version_ids)


def _received(log: str, task: str) -> int:
    """How many messages of `task` the worker received (a message delivered again counts again)."""
    return len(re.findall(rf"Task {re.escape(task)}\[[0-9a-f-]+\] received", log))
