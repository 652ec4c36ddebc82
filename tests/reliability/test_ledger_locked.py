"""The embedded ledger locked by another process for 30 s (a long write, a backup): a real SQLite lock on its
WAL index (benchmarks/faults.py LedgerLock), not a fake. A storage fault is an outage, never a refusal: the
analysis waits and completes after it, the ledger decides and logs nothing while it cannot answer, no batch
fails for good; a consent asked for meanwhile is answered 503 ledger_unavailable with Retry-After and nothing is
stored; the ledger's pages answer 503 in their own shape, never 500."""

import time
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.services import analysis_request_create
from benchmarks.faults import LedgerLock
from consent.models import Consent
from tests.clients import api_as, html_of, signed_in
from tests.conftest import consent_api_body, consent_terms
from tests.reliability.conftest import (
    access_log_transactions,
    ledger_access_events,
    wait_until_finished,
    wait_until_gating_began,
)
from tests.signing import passkey_of

RECORDS = 4
LOCKED_SECONDS = 30


@pytest.fixture
def lock(ledger):
    held = LedgerLock(ledger.path)
    yield held
    held.release()


@pytest.mark.he
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_analysis_waits_out_a_30_s_lock_and_completes_admitting_nothing_meanwhile(
    consented, clinician, models_registered, spawn_worker, start_compute_worker, ledger, lock
):
    people = consented(RECORDS)
    spawn_worker(
        queues="custodian",
        overrides={
            "LEDGER_BUSY_TIMEOUT_SECONDS": "1",
            "ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS": "1",
            "ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS": "2",
        },
    )
    start_compute_worker()
    analysis = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=1
    )
    wait_until_gating_began(analysis)
    lock.take()
    locked_at = datetime.now(UTC)
    waiting = set(
        AnalysisBatch.objects.filter(request=analysis, status=BatchStatus.PENDING).values_list("pk", flat=True)
    )
    assert waiting, "every batch was gated before the lock: the fault came too late"
    time.sleep(LOCKED_SECONDS)
    analysis.refresh_from_db()
    assert analysis.status == AnalysisStatus.RUNNING  # neither done nor failed while locked
    released_at = datetime.now(UTC)
    lock.release()

    assert wait_until_finished(analysis.id, timeout=120) == AnalysisStatus.COMPLETED
    batches = list(AnalysisBatch.objects.filter(request=analysis))
    assert {b.status for b in batches} == {BatchStatus.SCORED}  # none failed for good
    # What the ledger answered and logged, and when: nothing while it was locked; the batches that were
    # waiting were decided and logged after the lock was gone (a gate asked during the lock waited for it).
    events = ledger_access_events(ledger, analysis.id)
    logged_at = {e["batch_id"]: datetime.fromisoformat(e["recorded_at"].replace("Z", "+00:00")) for e in events}
    assert not [at for at in logged_at.values() if locked_at <= at <= released_at]
    for batch in batches:
        if batch.pk in waiting:
            assert logged_at[f"{analysis.id}:{batch.index}"] > released_at
    assert all(statuses == ["VALID"] for statuses in access_log_transactions(ledger, analysis.id).values())
    record_ids = sorted(str(record.id) for _, _, record in people)
    assert sorted(e["record_id"] for e in events) == record_ids
    assert ledger.verify().ok


@pytest.mark.slow
@pytest.mark.django_db
def test_a_consent_asked_for_while_the_ledger_is_locked_is_503_with_retry_after_and_nothing_is_stored(
    patient_user, clinician, ledger, lock, settings
):
    settings.LEDGER_BUSY_TIMEOUT_SECONDS = 0.5
    client = api_as(patient_user)
    asked = client.post("/api/consents/sign-request/", consent_api_body(consent_terms(clinician)), format="json")
    document = asked.json()["document"]
    body = {"document": document, "signature": passkey_of(patient_user.patient).sign(document)}
    height = ledger.height()
    lock.take()

    refused = client.post("/api/consents/", body, format="json")

    assert refused.status_code == 503
    assert refused.json()["code"] == "ledger_unavailable"
    assert int(refused["Retry-After"]) > 0
    assert Consent.objects.count() == 0
    lock.release()
    assert ledger.height() == height
    granted = client.post("/api/consents/", body, format="json")  # the same signed grant, once the ledger is back
    assert granted.status_code == 201


@pytest.mark.slow
@pytest.mark.django_db
def test_the_ledger_pages_answer_503_in_their_own_shape_while_it_is_locked(auditor, ledger, lock, settings):
    settings.LEDGER_BUSY_TIMEOUT_SECONDS = 0.5
    lock.take()

    api = api_as(auditor).get("/api/audit/ledger/blocks/")
    portal = signed_in(auditor).get(reverse("audit:ledger"))

    assert (api.status_code, api.json()["code"]) == (503, "ledger_unavailable")
    assert api["Content-Type"].startswith("application/json")
    assert portal.status_code == 503
    assert portal["Content-Type"].startswith("text/html")
    assert "not reachable" in html_of(portal)
    lock.release()
    assert api_as(auditor).get("/api/audit/ledger/blocks/").status_code == 200
