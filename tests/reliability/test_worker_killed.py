"""A custodian worker's process is SIGKILLed in the middle of a batch: between the gate and the
encryption, after the access events went to the ledger. acks_late with reject-on-worker-lost puts
the message back; a new pool process redoes the batch from its stored state."""

import os
import signal
import time

import pytest

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from audit.models import AccessEvent
from tests.reliability.conftest import (
    access_log_transactions,
    ledger_access_events,
    pool_children,
    wait_until_finished,
)

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 12, 4
MID_BATCH = (BatchStatus.GATED, BatchStatus.LOGGED)


def _kill_mid_batch(request, custodian, timeout: float = 60) -> tuple[int, str]:
    """SIGKILL the custodian's pool process as soon as a batch is between its gate and its encryption."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        caught = AnalysisBatch.objects.filter(request=request, status__in=MID_BATCH).values_list("pk", "status").first()
        if caught is not None:
            children = pool_children(custodian)
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

    killed_batch, state_at_kill = _kill_mid_batch(analysis, custodian)

    assert wait_until_finished(analysis.id) == AnalysisStatus.COMPLETED
    log = custodian.log_path.read_text()
    assert "WorkerLostError" in log or "signal 9" in log, "the kill did not reach a running task"
    batches = list(AnalysisBatch.objects.filter(request=analysis))
    assert {b.status for b in batches} == {BatchStatus.SCORED}
    # One ledger transaction per batch, the killed one included (logged before the kill or after, once).
    logged = access_log_transactions(ledger, analysis.id)
    assert sorted(logged) == sorted(f"{analysis.id}:{b.index}" for b in batches)
    assert all(statuses == ["VALID"] for statuses in logged.values()), logged
    record_ids = sorted(str(record.id) for _, _, record in people)
    assert sorted(e["record_id"] for e in ledger_access_events(ledger, analysis.id)) == record_ids
    assert sorted(
        AccessEvent.objects.filter(request_id=str(analysis.id), kind="record_access").values_list(
            "record_id", flat=True
        )
    ) == (record_ids)
    # One set of scores: every record exactly once.
    rows = analysis_results(request=analysis, viewer=clinician).rows
    assert sorted(row.record_id for row in rows) == record_ids
    killed = AnalysisBatch.objects.get(pk=killed_batch)
    assert sum(len(chunk["record_ids"]) for chunk in killed.column_keys) == len(killed.record_version_ids)
    assert state_at_kill in MID_BATCH
