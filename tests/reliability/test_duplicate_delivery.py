"""Every gate task is delivered twice, to two pool processes of a real worker at once: each batch is
gated and logged once on the ledger, sent to compute once and scored once."""

import re
from datetime import datetime

import pytest

from analytics.models import AnalysisStatus
from analytics.pipeline import analysis_start
from analytics.services import analysis_request_create
from analytics.tasks import analysis_batch_gate
from tests.conftest import wait_for
from tests.reliability.conftest import assert_done_once, wait_until_finished

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS, BATCH_SIZE = 12, 4
GATE_TASK = "analytics.tasks.analysis_batch_gate"


def test_a_gate_task_delivered_twice_at_once_is_computed_and_logged_once(
    consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger, monkeypatch
):
    people = consented(RECORDS)
    custodian = spawn_worker(queues="custodian", concurrency=2)
    compute = start_compute_worker()
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # sent below, twice
    analysis = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=BATCH_SIZE
    )
    batch_ids = analysis_start(request_id=str(analysis.id))
    deliveries = [  # each batch's two deliveries side by side: the two pool processes take them together
        (analysis_batch_gate.delay(batch_id).id, analysis_batch_gate.delay(batch_id).id) for batch_id in batch_ids
    ]

    assert wait_until_finished(analysis.id) == AnalysisStatus.COMPLETED
    # Every delivery has run to its end (no late duplicate left to count after the checks below) ...
    wait_for(
        lambda: custodian.log_path.read_text().count(f"Task {GATE_TASK}[") >= 4 * len(batch_ids),
        timeout=60,
        what="both deliveries of every batch to finish",
    )  # (one "received" and one "succeeded" line each)
    log = custodian.log_path.read_text()
    assert log.count(f"Task {GATE_TASK}[") == 4 * len(batch_ids)
    # ... and the two deliveries of a batch did run at once (each one's run from its end and its duration).
    runs = _runs(log)
    assert any(_overlap(runs[first], runs[second]) for first, second in deliveries), "no two deliveries ran at once"
    assert compute.log_path.read_text().count("succeeded in") == len(batch_ids)  # one compute per batch
    assert_done_once(analysis, people, ledger, clinician)


def _runs(log: str) -> dict[str, tuple[float, float]]:
    """task id -> (start, end) in seconds, from the worker's "succeeded in" lines."""
    runs = {}
    line = rf"\[(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+): [^\]]*\] Task {re.escape(GATE_TASK)}"
    for stamp, task_id, seconds in re.findall(rf"{line}\[([0-9a-f-]+)\] succeeded in ([0-9.]+)s", log):
        end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        runs[task_id] = (end - float(seconds), end)
    return runs


def _overlap(first: tuple[float, float], second: tuple[float, float]) -> bool:
    return first[0] < second[1] and second[0] < first[1]
