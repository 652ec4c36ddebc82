"""The analysis pipeline, run eagerly in this process against the real embedded ledger and TenSEAL."""

import json

import pytest
from django.db import connection

from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisBatch, AnalysisStatus, BatchStatus
from analytics.pipeline import analysis_start
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from analytics.tasks import analysis_batch_gate
from audit.models import AccessEvent
from health_platform.roles import Role
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_bundles, demo_patients
from records.models import Record, RecordVersion
from records.services import patient_link_user, record_ingest
from tests.conftest import (
    analysis_over_a_consent_revoked_on_the_ledger_only,
    every_gate_answer,
    explicit_analysis,
    grant,
    plain_scores,
)
from tests.records.factories import UserFactory
from tests.signing import revoke_signed

pytestmark = [pytest.mark.he, pytest.mark.django_db(transaction=True)]


def _access_log(ledger, request_id, kind="record_access"):
    return {
        e["record_id"]: (e["decision"], e["reason"], e["model_hash"])
        for e in ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(request_id)})).json()[
            "events"
        ]
        if e["kind"] == kind
    }


def test_a_mixed_cohort_scores_exactly_the_consented_intact_records(
    cohort, clinician, models_registered, ledger, blob_dir, eager, monkeypatch
):
    people = every_gate_answer(cohort, clinician, monkeypatch)
    (_, _, r0), (_, _, r1), (_, _, r2), (_, _, r3), (_, _, r4), (_, _, r5) = people

    request = explicit_analysis(clinician, people, "f" * 64)

    assert request.status == AnalysisStatus.COMPLETED
    assert (request.total_records, request.unknown_patients) == (6, 1)
    results = analysis_results(request=request, viewer=clinician)
    assert [row.record_id for row in results.rows] == [str(r0.id)]
    model = breast_cancer_model()
    expected = plain_scores(1)[0]
    assert results.rows[0].label == expected["label"]
    assert abs(results.rows[0].score - expected["score"]) < 1e-3
    assert results.model_sha256 == model.sha256
    assert _access_log(ledger, request.id) == {
        str(r0.id): ("admit", None, model.sha256),
        str(r1.id): ("refuse", "no_consent", model.sha256),
        str(r2.id): ("refuse", "consent_expired", model.sha256),
        str(r3.id): ("refuse", "consent_revoked", model.sha256),
        str(r4.id): ("refuse", "category_not_covered", model.sha256),
        str(r5.id): ("refuse", "hash_mismatch", model.sha256),
    }
    # The batch's outcome follows its decisions on the ledger: computed (for the one record it admitted).
    assert _access_log(ledger, request.id, kind="outcome") == {None: ("computed", None, model.sha256)}
    assert results.refusals == {
        "no_consent": 1,
        "consent_expired": 1,
        "consent_revoked": 1,
        "category_not_covered": 1,
        "hash_mismatch": 1,
    }


def test_a_revocation_takes_effect_for_every_batch_not_yet_gated(
    cohort, clinician, models_registered, ledger, blob_dir, monkeypatch
):
    people = cohort(4)
    consents = [grant(u, p, clinician) for u, p, _ in people]
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # we run the steps
    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="consented", batch_size=2
    )
    first, second = analysis_start(request_id=str(request.id))
    analysis_batch_gate.apply(args=[first])
    late = AnalysisBatch.objects.get(pk=second).decisions
    assert late == []  # not gated yet
    revoked_record = AnalysisBatch.objects.get(pk=second).record_version_ids[0]
    owner = RecordVersion.objects.get(pk=revoked_record).record.patient
    revoke_signed(actor=owner.user, consent=next(c for c in consents if c.patient_id == owner.pk))

    analysis_batch_gate.apply(args=[second])

    decisions = {d["version_id"]: d["reason"] for d in AnalysisBatch.objects.get(pk=second).decisions}
    assert decisions[revoked_record] == "consent_revoked"
    assert list(decisions.values()).count(None) == 1


def test_with_the_ledger_unavailable_nothing_is_scored_and_the_job_fails_clearly(
    clinician, models_registered, blob_dir, ledger_gone_after_consent
):
    patient = ledger_gone_after_consent()

    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=[patient.pseudonym]
    )

    request.refresh_from_db()
    batch = request.batches.get()
    assert (request.status, request.failure_code) == (AnalysisStatus.FAILED, "ledger_unavailable")
    assert batch.status == BatchStatus.FAILED
    assert (batch.decisions, batch.column_keys, batch.score_keys) == ([], [], [])
    stored = {p.name for p in blob_dir.rglob("*") if p.is_file()}
    assert stored == {request.public_context_key, request.compute_context_key}  # no ciphertext of any record


def test_a_batch_task_run_twice_scores_once_and_logs_once_per_record(
    consented, clinician, models_registered, ledger, blob_dir, eager, queued
):
    people = consented(3)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.id))

    analysis_batch_gate.apply(args=[batch_id])
    scores, height = AnalysisBatch.objects.get(pk=batch_id).score_keys, ledger.height()
    analysis_batch_gate.apply(args=[batch_id])  # delivered again

    assert AnalysisBatch.objects.get(pk=batch_id).score_keys == scores
    assert ledger.height() == height  # the second delivery wrote nothing to the ledger
    assert sorted(_access_log(ledger, request.id)) == sorted(str(r.id) for _, _, r in people)
    assert list(_access_log(ledger, request.id, kind="outcome").values()) == [("computed", None, request.model.sha256)]
    assert len(analysis_results(request=request, viewer=clinician).rows) == 3


def test_a_batch_resumed_after_dying_mid_way_logs_once_and_scores_once(
    consented, clinician, models_registered, ledger, blob_dir, eager, queued, monkeypatch
):
    consented(2)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.id))
    from analytics import pipeline

    real_encrypt = pipeline._encrypt

    def die(*args, **kwargs):
        raise SystemExit("worker killed after logging")

    monkeypatch.setattr(pipeline, "_encrypt", die)
    with pytest.raises(SystemExit):
        pipeline.analysis_batch_advance(batch_id=batch_id)
    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.LOGGED
    height = ledger.height()

    monkeypatch.setattr(pipeline, "_encrypt", real_encrypt)
    analysis_batch_gate.apply(args=[batch_id])  # redelivered

    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.SCORED
    # Not logged again: the one transaction since is the batch's outcome (computed), logged once it was scored.
    assert ledger.height() == height + 1
    assert len(_access_log(ledger, request.id)) == 2
    assert list(_access_log(ledger, request.id, kind="outcome").values()) == [("computed", None, request.model.sha256)]
    assert len(analysis_results(request=request, viewer=clinician).rows) == 2


def test_the_gate_reads_the_ledger_not_the_consent_mirror(cohort, clinician, models_registered, blob_dir, eager):
    ((user, patient, _),) = cohort(1)
    consent = grant(user, patient, clinician)
    with connection.cursor() as cursor:  # the mirror loses the consent; the ledger still holds it
        cursor.execute("DELETE FROM consent_consent")
    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=[patient.pseudonym]
    )
    assert len(analysis_results(request=request, viewer=clinician).rows) == 1
    assert consent.consent_id


def test_a_consent_revoked_on_the_ledger_while_the_mirror_says_active_is_refused_by_the_gate(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    request, record = analysis_over_a_consent_revoked_on_the_ledger_only(cohort, clinician)
    assert _access_log(ledger, request.id) == {
        str(record.id): ("refuse", "consent_revoked", breast_cancer_model().sha256)
    }
    batch = request.batches.get()
    assert (batch.admitted_count, batch.column_keys) == (0, [])
    stored = {p.name for p in blob_dir.rglob("*") if p.is_file()}
    assert stored == {request.public_context_key, request.compute_context_key}  # no ciphertext of the record


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [(10_000, 5000, [5000, 5000]), (10_000, 4096, [3334, 3333, 3333]), (7, 3, [3, 2, 2]), (0, 5, []), (4, 10, [4])],
)
def test_batches_are_as_few_as_the_size_allows_and_even(count, batch_size, sizes):
    from analytics.pipeline import even_batches

    batches = even_batches(list(range(count)), batch_size)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(count))


def test_a_consented_record_lacking_one_of_the_models_measurements_is_not_scored(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    (user, patient, record), *_ = cohort(1)
    grant(user, patient, clinician)
    # A second patient whose bundle lacks one of the model's 30 observations.
    short = demo_patients(dataset=BREAST_CANCER_DATASET, count=2)[1]
    (document,) = demo_bundles(patients=[short], max_entries=1000)
    wanted = set(breast_cancer_model().feature_codes)
    dropped = next(
        i
        for i, entry in enumerate(document["entry"])
        if entry["resource"]["resourceType"] == "Observation"
        and any(c["code"] in wanted for c in entry["resource"]["code"]["coding"])
    )
    del document["entry"][dropped]
    record_ingest(raw_body=json.dumps(document).encode(), actor=UserFactory(username="custodian-2"))
    other = Record.objects.exclude(patient=patient).get(category="imaging")
    other_user = UserFactory(username="patient-short", roles=[Role.PATIENT])
    patient_link_user(patient=other.patient, user=other_user)
    grant(other_user, other.patient, clinician)

    request = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="explicit",
        pseudonyms=[patient.pseudonym, other.patient.pseudonym],
    )

    results = analysis_results(request=request, viewer=clinician)
    assert [row.record_id for row in results.rows] == [str(record.id)]
    assert results.refusals == {"missing_features": 1}
    # The access log says so: the batch computed, that record (admitted) not computed, and why.
    outcomes = {
        e.record_id: (e.outcome, e.outcome_reason)
        for e in AccessEvent.objects.filter(request_id=str(request.id), kind="record_access")
    }
    assert outcomes == {str(record.id): ("computed", ""), str(other.id): ("not_computed", "missing_features")}


def test_results_are_read_one_score_ciphertext_at_a_time_and_progress_from_the_batches_counts(
    consented, clinician, models_registered, blob_dir, monkeypatch
):
    """A request of a million records must be readable in the memory of one batch: the rows come decrypted one
    score ciphertext at a time, and the progress is counted without reading any batch's decisions."""
    from analytics.engines import FileSystemBlobStore
    from analytics.selectors import analysis_progress, analysis_result_rows
    from analytics.tasks import analysis_batch_gate

    people = consented(5, not_consenting=1)
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)  # we run the steps
    request = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="explicit",
        pseudonyms=[patient.pseudonym for _, patient, _ in people],
        batch_size=3,
    )
    batches = analysis_start(request_id=str(request.id))
    assert len(batches) == 2

    def counted_from_decisions() -> tuple[int, int, int]:
        decided = [d for b in AnalysisBatch.objects.filter(request=request) for d in b.decisions]
        admitted = sum(d["decision"] == "admit" for d in decided)
        return len(decided), admitted, len(decided) - admitted

    for batch in batches:
        analysis_batch_gate.apply(args=[batch])
        progress = analysis_progress(request=request)
        assert (progress.gated, progress.admitted, progress.refused) == counted_from_decisions()
    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    progress = analysis_progress(request=request)
    assert (progress.total, progress.gated, progress.refused, progress.refusals) == (5, 5, 1, {"no_consent": 1})
    assert (progress.scored, progress.batches_done) == (4, 2)

    fetched: list[str] = []
    get = FileSystemBlobStore.get
    monkeypatch.setattr(FileSystemBlobStore, "get", lambda store, key: fetched.append(key) or get(store, key))
    rows = analysis_result_rows(request=request, viewer=clinician)
    first = next(rows)
    assert len(fetched) == 1  # the first batch's score only
    streamed = [first, *rows]
    assert len(fetched) == 2
    assert streamed == analysis_results(request=request, viewer=clinician).rows
    assert len(streamed) == 4
