"""The access log tells what happened after the gate's decision: a failed or cancelled request's admitted
records are logged "not computed", with why, on the ledger, and auditors and patients read it; an outcome the
ledger could not take when the request stopped is logged by the sweep once the ledger is back."""

import time

import pytest
from django.urls import reverse

from analytics.models import AnalysisBatch, AnalysisRequest, AnalysisStatus, BatchStatus
from analytics.pipeline import (
    OUTCOME_CLAIM,
    analyses_with_outcomes_to_log,
    analysis_batch_advance,
    analysis_fail,
    analysis_outcomes_log,
    analysis_start,
)
from analytics.services import analysis_request_create
from analytics.tasks import analysis_batch_collect, resume_stalled_analyses
from audit.models import AccessEvent
from ledger import LedgerUnavailable
from tests.clients import api_as, html_of, signed_in
from tests.conftest import ledger_at
from tests.reliability.conftest import access_log_transactions, ledger_access_events

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]

UNREACHABLE = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"


@pytest.fixture
def logged_not_computed(consented, clinician, models_registered, blob_dir, monkeypatch):
    """A request of two batches whose first is gated, logged and encrypted, and not yet computed."""
    people = consented(4)
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # the steps are run here
    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=2
    )
    first, second = analysis_start(request_id=str(request.id))
    assert analysis_batch_advance(batch_id=first) is not None  # a compute order: encrypted, not scored
    return request, people, AnalysisBatch.objects.get(pk=first), AnalysisBatch.objects.get(pk=second)


def _outcomes(request):
    return {
        e.record_id: (e.outcome, e.outcome_reason)
        for e in AccessEvent.objects.filter(request_id=str(request.id), kind="record_access")
    }


def test_a_failed_requests_admitted_records_are_logged_not_computed_and_read_so_by_auditors_and_patients(
    logged_not_computed, ledger, auditor
):
    request, people, first, second = logged_not_computed
    logged_records = {d["record_id"] for d in first.decisions}

    analysis_fail(batch_id=first.pk, code="ledger_unavailable")
    assert analysis_outcomes_log(request_id=request.pk) == 1

    (outcome,) = ledger_access_events(ledger, request.id, kind="outcome")
    assert (outcome["decision"], outcome["reason"], outcome["batch_id"]) == (
        "not_computed",
        "request_failed",
        f"{request.id}:{first.index}:outcome",
    )
    assert _outcomes(request) == dict.fromkeys(logged_records, ("not_computed", "request_failed"))
    second.refresh_from_db()
    assert (second.status, second.outcome) == (BatchStatus.FAILED, "")  # never gated: nothing to explain
    # Logged once: the sweep and a second delivery log nothing more.
    assert analysis_outcomes_log(request_id=request.pk) == 0
    assert len(access_log_transactions(ledger, request.id, outcomes=True)) == 1
    # Auditors read it in the search, each patient on their own page.
    search = html_of(signed_in(auditor).get(reverse("audit:search"), {"request": str(request.id)}))
    assert search.count('data-outcome="not_computed"') == len(logged_records)
    assert "Not computed: the analysis stopped before it was computed" in search
    patient_user = next(user for user, _, record in people if str(record.id) in logged_records)
    mine = html_of(signed_in(patient_user).get(reverse("audit:my-data")))
    assert 'data-outcome="not_computed"' in mine
    assert "the analysis stopped before it was computed" in mine


def test_an_outcome_the_ledger_could_not_take_is_logged_by_the_sweep_once_it_is_back(
    logged_not_computed, ledger, settings, eager_tasks
):
    request, _people, first, _second = logged_not_computed
    analysis_fail(batch_id=first.pk, code="ledger_unavailable")
    reachable = settings.LEDGER_URL
    with ledger_at(settings, UNREACHABLE), pytest.raises(LedgerUnavailable):
        analysis_outcomes_log(request_id=request.pk)
    assert analyses_with_outcomes_to_log() == [str(request.pk)]
    assert ledger_access_events(ledger, request.id, kind="outcome") == []

    with ledger_at(settings, reachable):
        resume_stalled_analyses.apply()  # the beat's sweep, the ledger back

    assert [e["decision"] for e in ledger_access_events(ledger, request.id, kind="outcome")] == ["not_computed"]
    assert analyses_with_outcomes_to_log() == []


def test_a_batchs_accesses_are_on_the_ledger_at_once_and_in_the_mirror_once_it_is_done_whatever_the_ledger_did(
    logged_not_computed, ledger, settings, eager_tasks
):
    request, _people, first, second = logged_not_computed
    on_ledger = {e["record_id"] for e in ledger_access_events(ledger, request.id)}
    assert on_ledger == {d["record_id"] for d in first.decisions}  # logged before use
    assert len(on_ledger) == 2
    # The log step does not wait for the audit mirror: the batch still running, the mirror has none of it yet.
    assert first.access_mirror_pending
    assert not AccessEvent.objects.filter(request_id=str(request.id)).exists()
    assert analyses_with_outcomes_to_log() == []

    analysis_fail(batch_id=first.pk, code="ledger_unavailable")  # done (not computed); its task dies here
    reachable = settings.LEDGER_URL
    with ledger_at(settings, UNREACHABLE), pytest.raises(LedgerUnavailable):
        analysis_outcomes_log(request_id=request.pk)
    assert AnalysisBatch.objects.get(pk=first.pk).access_mirror_pending  # nothing lost: still to mirror
    assert analyses_with_outcomes_to_log() == [str(request.pk)]

    with ledger_at(settings, reachable):
        resume_stalled_analyses.apply()  # the beat's sweep, the ledger back

    mirrored = AccessEvent.objects.filter(request_id=str(request.id), kind="record_access")
    assert {e.record_id for e in mirrored} == on_ledger
    assert {(e.tx_id, e.block_number) for e in mirrored} == {(first.access_log_tx_id, first.access_log_block)}
    assert _outcomes(request) == dict.fromkeys(on_ledger, ("not_computed", "request_failed"))  # marked after
    assert not AnalysisBatch.objects.filter(request=request, access_mirror_pending=True).exists()
    assert analyses_with_outcomes_to_log() == []
    second.refresh_from_db()
    assert (second.access_log_tx_id, second.access_mirror_pending) == ("", False)  # never logged: nothing to mirror


def test_the_outcomes_and_the_mirror_follow_the_requests_last_batch_not_each_batch_and_the_sweep_does_not_wait(
    logged_not_computed, ledger, eager_tasks
):
    request, _people, first, second = logged_not_computed
    analysis_batch_collect.apply(args=[["its-score"], first.pk])  # the first batch scored: the other still runs

    assert AnalysisBatch.objects.get(pk=first.pk).status == BatchStatus.SCORED
    assert ledger_access_events(ledger, request.id, kind="outcome") == []  # the running batch keeps the workers
    assert not AccessEvent.objects.filter(request_id=str(request.id)).exists()
    assert analyses_with_outcomes_to_log() == [str(request.pk)]  # the beat's sweep would take it: a long analysis

    order = analysis_batch_advance(batch_id=second.pk)
    analysis_batch_collect.apply(args=[["its-score"], order.batch_id])  # the last one: the request is done

    assert AnalysisRequest.objects.get(pk=request.pk).status == AnalysisStatus.COMPLETED
    outcomes = ledger_access_events(ledger, request.id, kind="outcome")
    assert sorted(e["batch_id"] for e in outcomes) == [f"{request.id}:0:outcome", f"{request.id}:1:outcome"]
    assert {e["decision"] for e in outcomes} == {"computed"}
    on_ledger = {e["record_id"] for e in ledger_access_events(ledger, request.id)}
    assert len(on_ledger) == 4
    assert _outcomes(request) == dict.fromkeys(on_ledger, ("computed", ""))
    assert analyses_with_outcomes_to_log() == []


def test_an_outcome_claimed_by_another_task_is_left_to_it_and_taken_back_once_that_task_is_long_gone(
    logged_not_computed, ledger, monkeypatch
):
    request, _people, first, _second = logged_not_computed
    analysis_fail(batch_id=first.pk, code="ledger_unavailable")
    now = time.time()
    fresh = f"{OUTCOME_CLAIM}{int(now) - 5}:other-task"
    AnalysisBatch.objects.filter(pk=first.pk).update(outcome_tx_id=fresh)
    updated_at = AnalysisBatch.objects.get(pk=first.pk).updated_at

    # Another task is logging it: nothing is submitted twice, the claim stands.
    assert analysis_outcomes_log(request_id=request.pk) == 0
    assert analyses_with_outcomes_to_log() == []
    assert ledger_access_events(ledger, request.id, kind="outcome") == []
    assert AnalysisBatch.objects.get(pk=first.pk).outcome_tx_id == fresh

    # A minute on, that task is presumed dead: the claim is taken back and the outcome logged, once.
    monkeypatch.setattr("analytics.pipeline.time.time", lambda: now + 60)
    assert analyses_with_outcomes_to_log() == [str(request.pk)]
    assert analysis_outcomes_log(request_id=request.pk) == 1
    assert [e["decision"] for e in ledger_access_events(ledger, request.id, kind="outcome")] == ["not_computed"]
    batch = AnalysisBatch.objects.get(pk=first.pk)
    assert not batch.outcome_tx_id.startswith(OUTCOME_CLAIM)
    assert batch.updated_at == updated_at  # claims are bookkeeping: the batch's row is not touched by them


def test_a_cancelled_request_computes_nothing_more_and_logs_why(
    logged_not_computed, ledger, clinician, other_clinician, eager_tasks
):
    request, _people, first, second = logged_not_computed
    url = f"/api/analyses/{request.id}/cancel/"

    assert api_as(other_clinician).post(url).status_code == 404  # another clinician's request is not theirs
    cancelled = api_as(clinician).post(url)

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == AnalysisStatus.CANCELLED
    assert analysis_batch_advance(batch_id=second.pk) is None  # the batch not yet gated never will be
    second.refresh_from_db()
    assert (second.status, second.gate_at) == (BatchStatus.CANCELLED, None)
    assert {d["record_id"] for d in first.decisions} == set(_outcomes(request))
    assert set(_outcomes(request).values()) == {("not_computed", "request_cancelled")}
    again = api_as(clinician).post(url)
    assert (again.status_code, again.json()["code"]) == (409, "analysis_finished")


def test_the_outcomes_are_logged_one_batch_at_a_time_without_reading_decisions_nobody_needs(
    logged_not_computed, ledger, eager_tasks
):
    """A million-record request has 200 batches of 5,000 decisions: read together to log their outcomes, they took
    1.7 GB in a worker. Each batch is read alone, without its lists; its decisions only for records it skipped."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from analytics.pipeline import analysis_outcomes_log

    request, _people, first, second = logged_not_computed
    analysis_batch_collect.apply(args=[["its-score"], first.pk])
    order = analysis_batch_advance(batch_id=second.pk)
    AnalysisBatch.objects.filter(pk=order.batch_id).update(status=BatchStatus.SCORED, outcome="computed")
    AnalysisRequest.objects.filter(pk=request.pk).update(status=AnalysisStatus.COMPLETED)

    with CaptureQueriesContext(connection) as queries:
        assert analysis_outcomes_log(request_id=request.pk) == 2
    read = [
        query["sql"]
        for query in queries
        if query["sql"].startswith("SELECT") and "analytics_analysisbatch" in query["sql"]
    ]
    assert not [sql for sql in read if '"decisions"' in sql or '"record_version_ids"' in sql]
    assert sorted(e["batch_id"] for e in ledger_access_events(ledger, request.id, kind="outcome")) == [
        f"{request.id}:0:outcome",
        f"{request.id}:1:outcome",
    ]
