"""Work whose message was lost is sent again by the stalled-work sweep; a duplicate that loses the
race to encrypt a batch sends no second compute order."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import AnalysisBatch, AnalysisRequest, AnalysisStatus, BatchStatus
from analytics.services import (
    _encrypt,
    analyses_stalled,
    analysis_batch_advance,
    analysis_request_create,
    analysis_start,
    model_spec,
)
from analytics.tasks import resume_stalled_analyses
from audit.models import AccessEvent
from tests.analytics.conftest import grant

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]


def age(model, pk, seconds=3600):
    field = "created_at" if model is AnalysisRequest else "updated_at"
    model.objects.filter(pk=pk).update(**{field: timezone.now() - timedelta(seconds=seconds)})


@pytest.fixture
def consented(cohort, clinician):
    people = cohort(3)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    return people


def test_a_request_whose_start_message_was_lost_is_started_by_the_sweep(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # the message is lost
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert analyses_stalled(stalled_after=timedelta(minutes=15)) == ([], [])  # too recent to be called lost

    age(AnalysisRequest, request.pk)
    resume_stalled_analyses.apply()

    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    assert AccessEvent.objects.filter(request_id=str(request.pk)).count() == 3


def test_a_batch_left_encrypted_without_its_compute_order_is_scored_after_the_sweep(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    assert analysis_batch_advance(batch_id=batch_id) is not None  # encrypted; the order is never sent
    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.ENCRYPTED

    age(AnalysisBatch, batch_id)
    resume_stalled_analyses.apply()

    request.refresh_from_db()
    batch = AnalysisBatch.objects.get(pk=batch_id)
    assert (request.status, batch.status) == (AnalysisStatus.COMPLETED, BatchStatus.SCORED)
    assert AccessEvent.objects.filter(request_id=str(request.pk)).count() == 3  # logged once, not again


def test_a_duplicate_that_loses_the_race_to_encrypt_sends_no_compute_order(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    batch = AnalysisBatch.objects.select_related("request__model").get(pk=batch_id)
    first_order = analysis_batch_advance(batch_id=batch_id)  # the first delivery: gated, logged, encrypted
    stale_copy = AnalysisBatch.objects.select_related("request__model").get(pk=batch_id)
    stale_copy.status = BatchStatus.LOGGED  # what a concurrent delivery saw before the first one encrypted

    stored, moved = _encrypt(stale_copy, model_spec(batch.request.model), None)

    assert first_order is not None
    assert moved is False
    assert stored.column_keys == AnalysisBatch.objects.get(pk=batch_id).column_keys  # the winner's, untouched
    assert analysis_batch_advance(batch_id=batch_id) is not None  # a later redelivery still resends the order
