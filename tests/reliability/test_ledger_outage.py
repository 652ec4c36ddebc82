"""The ledger stops in the middle of an analysis run by real workers.

The fault is real: the custodian worker reaches the embedded ledger through a directory (a mount, as
a shared volume would be) that is repointed at a path that cannot exist, then back. A process that
already holds the SQLite file open keeps reading its inode whatever happens to the path, so the
worker runs with --max-tasks-per-child 1: every batch opens the ledger afresh, as a newly started
worker would, and meets the outage through the operating system, not through a fake.
"""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from audit.models import AccessEvent
from tests.conftest import wait_for
from tests.reliability.conftest import (
    LedgerMount,
    access_log_transactions,
    ledger_access_events,
    stored_blobs,
    wait_until_finished,
)

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORDS = 4
COLLECTED = re.compile(rb"analytics\.tasks\.analysis_batch_collect\[[^\]]+\] succeeded in")


@pytest.fixture
def outage(consented, clinician, spawn_worker, start_compute_worker, tmp_path, ledger):
    def start(*, deadline_seconds: int, compute_now: bool = True, cut_when: BatchStatus = BatchStatus.GATED):
        """Start the workers and a request of RECORDS batches; cut the ledger once the first batch has reached
        `cut_when` (GATED: it has had its gate answer; ENCRYPTED: its compute order is sent too). Without
        `compute_now` the compute worker is not started: an order sent stays in flight, on the broker."""
        people = consented(RECORDS)
        mount = LedgerMount(tmp_path, ledger)
        custodian = mount.worker(spawn_worker, ANALYTICS_REQUEST_DEADLINE_SECONDS=str(deadline_seconds))
        if compute_now:
            start_compute_worker()
        request = analysis_request_create(
            requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=1
        )
        # Cut the ledger as soon as the first batch has got that far: the rest are still to be gated.
        reached = {
            BatchStatus.GATED: [BatchStatus.PENDING],
            BatchStatus.ENCRYPTED: [BatchStatus.PENDING, BatchStatus.GATED, BatchStatus.LOGGED],
        }
        wait_for(
            lambda: AnalysisBatch.objects.filter(request=request).exclude(status__in=reached[cut_when]).exists(),
            timeout=60,
            interval=0.01,
            what=f"the first batch to be {cut_when}",
        )
        down = mount.cut()
        not_gated = set(
            AnalysisBatch.objects.filter(request=request, status=BatchStatus.PENDING).values_list("pk", flat=True)
        )
        assert not_gated, "the job finished gating before the ledger went away: the fault came too late"
        return request, people, mount, custodian, down, not_gated

    return start


def test_a_ledger_back_within_the_retry_window_resumes_the_job_and_logs_each_record_once(
    outage, clinician, models_registered, ledger
):
    request, people, mount, custodian, down, not_gated = outage(deadline_seconds=600)
    wait_for(
        lambda: b"analysis_batch_ledger_retry" in custodian.log_path.read_bytes(),
        timeout=30,
        what="a batch to meet the outage",
    )
    time.sleep(1.5)  # several gate attempts fail while it is away
    up = mount.restore()

    assert wait_until_finished(request.id) == AnalysisStatus.COMPLETED
    batches = list(AnalysisBatch.objects.filter(request=request))
    assert {b.status for b in batches} == {BatchStatus.SCORED}
    for batch in batches:
        # No gate answer dates from the outage; the batches that were waiting were gated after it. A gate takes its
        # moment just before it opens the ledger: one that took it in the outage's last instant and reached the
        # ledger back is answered for that moment, so the last second of the outage is left out, for the batches
        # that were waiting as for the others.
        last_instant = up - timedelta(seconds=1)
        assert not (down <= batch.gate_at <= last_instant), batch.index
        if batch.pk in not_gated:
            assert batch.gate_at > last_instant, batch.index
        # What was encrypted is exactly what the ledger admitted.
        admitted = {d["record_id"] for d in batch.decisions if d["decision"] == "admit"}
        assert {r for chunk in batch.column_keys for r in chunk["record_ids"]} == admitted
    # Each record logged once, on the ledger and in the mirror; each batch in one valid transaction.
    record_ids = sorted(str(record.id) for _, _, record in people)
    events = ledger_access_events(ledger, request.id)
    assert sorted(e["record_id"] for e in events) == record_ids
    assert {e["decision"] for e in events} == {"admit"}
    mirrored = AccessEvent.objects.filter(request_id=str(request.id), kind="record_access")
    # Mirrored once each batch is done, by the task that logs its outcome, just after the request completes.
    wait_for(lambda: mirrored.count() >= len(record_ids), timeout=30, what="the accesses to reach the audit mirror")
    assert sorted(mirrored.values_list("record_id", flat=True)) == record_ids
    assert all(statuses == ["VALID"] for statuses in access_log_transactions(ledger, request.id).values())
    assert len(access_log_transactions(ledger, request.id)) == RECORDS
    results = analysis_results(request=request, viewer=clinician)
    assert sorted(row.record_id for row in results.rows) == record_ids
    assert ledger.verify().ok


def test_a_ledger_that_does_not_come_back_fails_the_job_closed_with_ledger_unavailable(
    outage, clinician, models_registered, start_compute_worker, ledger, blob_dir
):
    # The first batch's compute order is in flight when the request fails: no compute worker runs until then.
    request, _people, _mount, custodian, _down, not_gated = outage(
        deadline_seconds=20,
        compute_now=False,
        cut_when=BatchStatus.ENCRYPTED,
    )

    assert wait_until_finished(request.id, timeout=120) == AnalysisStatus.FAILED
    request.refresh_from_db()
    assert request.failure_code == "ledger_unavailable"
    assert b"analysis_batch_ledger_retry" in custodian.log_path.read_bytes()
    batches = {b.pk: b for b in AnalysisBatch.objects.filter(request=request)}
    for batch_id in not_gated:
        batch = batches[batch_id]
        # Never gated, so never logged, encrypted or scored.
        assert batch.status == BatchStatus.FAILED
        assert (batch.decisions, batch.column_keys, batch.score_keys) == ([], [], [])
        assert batch.gate_at is None
    # Only the records of the batches gated before the outage were logged, each once.
    gated_records = sorted(d["record_id"] for b in batches.values() if b.pk not in not_gated for d in b.decisions)
    assert sorted(e["record_id"] for e in ledger_access_events(ledger, request.id)) == gated_records
    # And nothing of the failed request is scored from now on, whatever was in flight: the compute worker,
    # started only now, computes the orders that were waiting, and their collection scores nothing.
    in_flight = list(AnalysisBatch.objects.filter(request=request, compute_sent_at__isnull=False))
    assert in_flight, "no compute order was sent before the ledger went away"
    computing_from = timezone.now()
    start_compute_worker()
    wait_for(
        lambda: len(COLLECTED.findall(custodian.log_path.read_bytes())) == len(in_flight),
        timeout=120,
        what="the in-flight compute orders to be computed and collected",
    )
    request.refresh_from_db()
    for batch in AnalysisBatch.objects.filter(request=request):
        assert (batch.status, batch.score_keys) == (BatchStatus.FAILED, []), batch.index
        assert batch.updated_at < computing_from, batch.index  # the late collection wrote nothing
    # The only score ciphertexts in the store are the in-flight orders' (one per chunk), held by no batch.
    contexts = {request.public_context_key, request.compute_context_key}
    features = {key for batch in in_flight for chunk in batch.column_keys for key in chunk["columns"]}
    scores = stored_blobs(blob_dir) - contexts - features
    assert len(scores) == sum(len(batch.column_keys) for batch in in_flight)
    assert all(batch.pk not in not_gated for batch in in_flight)
