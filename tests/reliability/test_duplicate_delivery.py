"""Every gate task is delivered twice, to two pool processes of a real worker at once: each batch is
gated and logged once on the ledger, sent to compute once and scored once."""

import time

import pytest

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from analytics.tasks import analysis_batch_gate
from audit.models import AccessEvent
from tests.reliability.conftest import access_log_transactions, ledger_access_events, wait_until_finished

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 12, 4


def test_a_gate_task_delivered_twice_is_computed_and_logged_once(
    consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger
):
    people = consented(RECORDS)
    spawn_worker(queues="custodian", concurrency=2)
    compute = start_compute_worker()
    analysis = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=BATCH_SIZE
    )
    deadline = time.monotonic() + 60
    while not (batch_ids := list(AnalysisBatch.objects.filter(request=analysis).values_list("pk", flat=True))):
        assert time.monotonic() < deadline, "the analysis was never planned"
        time.sleep(0.01)
    for batch_id in batch_ids:  # the second delivery of every gate task
        analysis_batch_gate.delay(batch_id)

    assert wait_until_finished(analysis.id) == AnalysisStatus.COMPLETED
    time.sleep(1)  # let any late duplicate finish before counting
    assert set(AnalysisBatch.objects.filter(request=analysis).values_list("status", flat=True)) == {BatchStatus.SCORED}
    logged = access_log_transactions(ledger, analysis.id)
    assert sorted(logged) == sorted(f"{analysis.id}:{index}" for index in range(len(batch_ids)))
    assert all(statuses == ["VALID"] for statuses in logged.values()), logged
    record_ids = sorted(str(record.id) for _, _, record in people)
    assert sorted(e["record_id"] for e in ledger_access_events(ledger, analysis.id)) == record_ids
    assert sorted(
        AccessEvent.objects.filter(request_id=str(analysis.id), kind="record_access").values_list(
            "record_id", flat=True
        )
    ) == (record_ids)
    assert compute.log_path.read_text().count("succeeded in") == len(batch_ids)  # one compute per batch
    rows = analysis_results(request=analysis, viewer=clinician).rows
    assert sorted(row.record_id for row in rows) == record_ids
