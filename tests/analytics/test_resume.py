"""Work whose message was lost is sent again by the stalled-work sweep; a duplicate that loses the
race to encrypt a batch sends no second compute order."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import pipeline
from analytics.compute import SCORE_TASK
from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisBatch, AnalysisRequest, AnalysisStatus, BatchStatus
from analytics.pipeline import (
    LedgerNotAnswering,
    analyses_stalled,
    analysis_batch_advance,
    analysis_start,
    compute_order_claim,
    compute_order_release,
    log_claim,
)
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from analytics.tasks import analysis_batch_gate, resume_stalled_analyses
from audit.models import AccessEvent
from ledger import LedgerUnavailable
from records.canonical import canonical_json
from records.crypto import record_cipher, record_seal
from records.models import RecordVersion
from records.selectors import record_version_document
from tests.conftest import grant, plain_scores
from tests.reliability.conftest import ledger_access_events, stored_blobs

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
    assert AccessEvent.objects.filter(request_id=str(request.pk), kind="record_access").count() == 3


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
    assert (
        AccessEvent.objects.filter(request_id=str(request.pk), kind="record_access").count() == 3
    )  # logged once, not again


def test_only_one_gate_message_claims_the_compute_order_unless_it_is_delivered_again_or_the_sweep_forces_it(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    assert compute_order_claim(batch_id=batch_id, claimant="a") is False  # not encrypted yet: nothing to send
    assert analysis_batch_advance(batch_id=batch_id) is not None

    assert compute_order_claim(batch_id=batch_id, claimant="a") is True  # the first message sends it
    assert compute_order_claim(batch_id=batch_id, claimant="b") is False  # another message for the batch does not
    # Message a delivered again: the delivery that claimed it stopped unacknowledged, maybe before its send.
    assert compute_order_claim(batch_id=batch_id, claimant="a") is True
    compute_order_release(batch_id=batch_id)  # the send failed: the next delivery may try again
    assert compute_order_claim(batch_id=batch_id, claimant="b") is True
    assert compute_order_claim(batch_id=batch_id, claimant="a") is False
    assert compute_order_claim(batch_id=batch_id, claimant="c", force=True) is True  # the sweep: a lost order


def _steps_recorded(monkeypatch) -> list[tuple]:
    """What each delivery of a gate task does, in order: the pipeline's gate, its ledger write (the access-log
    transaction), its encryption, the compute-order claim (with `force` and its answer) and the order sent
    (the tasks of the chain and their arguments). The real functions run; only the sending is not done."""
    steps: list[tuple] = []

    def recorded(name, real):
        def step(*args, **kwargs):
            steps.append((name,))
            return real(*args, **kwargs)

        return step

    for name in ("_gate", "access_batch_log", "_encrypt"):
        monkeypatch.setattr(f"analytics.pipeline.{name}", recorded(name, getattr(pipeline, name)))

    def claim(*, batch_id, claimant, force=False):
        claimed = compute_order_claim(batch_id=batch_id, claimant=claimant, force=force)
        steps.append(("compute_order_claim", batch_id, force, claimed))
        return claimed

    monkeypatch.setattr("analytics.pipeline.compute_order_claim", claim)
    monkeypatch.setattr(
        "analytics.tasks._send_patiently",
        lambda signature, batch_id: steps.append(
            ("send", batch_id, [(task.task, task.args, task.options["queue"]) for task in signature.tasks])
        ),
    )
    return steps


def _gated_once(clinician, ledger, blob_dir, monkeypatch):
    """A consented analysis of one batch, its gate task run once (steps recorded): (steps, request, batch id, the
    ledger's height and the blobs stored before the task)."""
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    steps = _steps_recorded(monkeypatch)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    height, blobs = ledger.height(), stored_blobs(blob_dir)
    analysis_batch_gate.apply(args=[batch_id])
    return steps, request, batch_id, height, blobs


def test_a_gate_task_delivered_again_after_its_order_was_sent_sends_nothing(
    consented, clinician, models_registered, ledger, blob_dir, eager, monkeypatch, settings
):
    settings.ANALYTICS_SCORE_ON = "compute"
    steps, request, batch_id, height, blobs = _gated_once(clinician, ledger, blob_dir, monkeypatch)
    batch = AnalysisBatch.objects.get(pk=batch_id)
    model = breast_cancer_model()
    order = [
        (
            SCORE_TASK,
            (request.compute_context_key, [c["columns"] for c in batch.column_keys], list(model.weights), model.bias),
            "compute",
        ),
        ("analytics.tasks.analysis_batch_collect", (batch_id,), "custodian"),
    ]
    assert steps == [
        ("_gate",),
        ("access_batch_log",),
        ("_encrypt",),
        ("compute_order_claim", batch_id, False, True),
        ("send", batch_id, order),
    ]
    assert ledger.height() == height + 1  # the batch's one access-log transaction
    assert (batch.status, batch.admitted_count) == (BatchStatus.ENCRYPTED, 3)
    assert batch.compute_sent_at is not None
    ciphertexts = stored_blobs(blob_dir) - blobs
    assert ciphertexts == {key for chunk in batch.column_keys for key in chunk["columns"]}
    events = len(ledger_access_events(ledger, request.pk))
    steps.clear()

    analysis_batch_gate.apply(args=[batch_id])  # delivered again

    assert steps == [("compute_order_claim", batch_id, False, False)]  # no gate, no log, no encryption, no order
    assert ledger.height() == height + 1
    again = AnalysisBatch.objects.get(pk=batch_id)
    assert (again.status, again.column_keys, again.compute_sent_at) == (
        BatchStatus.ENCRYPTED,
        batch.column_keys,
        batch.compute_sent_at,
    )
    assert stored_blobs(blob_dir) - blobs == ciphertexts
    steps.clear()

    analysis_batch_gate.apply(args=[batch_id], kwargs={"resend": True})  # the sweep, later

    assert steps == [("compute_order_claim", batch_id, True, True), ("send", batch_id, order)]  # the same order
    assert ledger.height() == height + 1
    assert AnalysisBatch.objects.get(pk=batch_id).column_keys == batch.column_keys  # not encrypted again
    assert stored_blobs(blob_dir) - blobs == ciphertexts
    assert len(ledger_access_events(ledger, request.pk)) == events == 3


def test_a_batch_scored_by_its_custodian_writes_one_ciphertext_a_chunk_and_is_collected_once_whatever_the_deliveries(
    consented, clinician, models_registered, ledger, blob_dir, eager, monkeypatch, settings
):
    """ANALYTICS_SCORE_ON=custodian: the worker that encrypts the features scores them in memory; nothing is sent
    to the compute queue, and a task delivered again, or the stalled-work sweep, collects what is stored."""
    settings.ANALYTICS_SCORE_ON = "custodian"
    steps, request, batch_id, height, blobs = _gated_once(clinician, ledger, blob_dir, monkeypatch)
    batch = AnalysisBatch.objects.get(pk=batch_id)
    # No claim, nothing sent: collected at once, and its outcome logged (the second ledger write).
    assert steps == [("_gate",), ("access_batch_log",), ("_encrypt",), ("access_batch_log",)]
    assert (batch.status, batch.admitted_count) == (BatchStatus.SCORED, 3)
    assert [chunk["columns"] for chunk in batch.column_keys] == [[]]
    assert batch.score_keys == [chunk["score"] for chunk in batch.column_keys]
    assert stored_blobs(blob_dir) - blobs == set(batch.score_keys)  # one score ciphertext; no feature column
    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    rows = analysis_results(request=request, viewer=clinician).rows
    expected = plain_scores(3)
    assert sorted(round(row.score, 3) for row in rows) == sorted(round(e["score"], 3) for e in expected)
    logged = ledger.height()
    assert logged == height + 2  # the access log and the outcome
    steps.clear()

    analysis_batch_gate.apply(args=[batch_id])  # delivered again
    analysis_batch_gate.apply(args=[batch_id], kwargs={"resend": True})  # the sweep

    assert steps == []
    assert ledger.height() == logged
    assert AnalysisBatch.objects.get(pk=batch_id).score_keys == batch.score_keys


def test_a_gate_message_killed_between_claiming_its_order_and_sending_it_sends_it_when_delivered_again(
    consented, clinician, models_registered, ledger, blob_dir, eager, monkeypatch, settings
):
    """The chaos run found it: the worker killed after the claim and before the send left the batch encrypted,
    claimed and never scored until the stalled-work sweep, a quarter of an hour later."""
    settings.ANALYTICS_SCORE_ON = "compute"
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    steps = _steps_recorded(monkeypatch)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    height = ledger.height()

    def killed(signature, batch_id):
        raise SystemExit("the worker was killed before its order left")  # not an Exception: nothing is released

    with monkeypatch.context() as patch:
        patch.setattr("analytics.tasks._send_patiently", killed)
        with pytest.raises(SystemExit):
            analysis_batch_gate.apply(args=[batch_id], task_id="gate-message-1", throw=True)
    assert AnalysisBatch.objects.get(pk=batch_id).compute_claimed_by == "gate-message-1"
    steps.clear()

    analysis_batch_gate.apply(args=[batch_id], task_id="gate-message-2")  # another message for the batch

    assert steps == [("compute_order_claim", batch_id, False, False)]
    steps.clear()

    analysis_batch_gate.apply(args=[batch_id], task_id="gate-message-1")  # the killed one, delivered again

    assert [step[0] for step in steps] == ["compute_order_claim", "send"]  # no gate, log or encryption again
    assert steps[0] == ("compute_order_claim", batch_id, False, True)
    assert ledger.height() == height + 1  # the batch's one access-log transaction


def _reseal(version: RecordVersion, document: dict) -> None:
    """Someone holding the record key rewrites a version's content (the ledger still holds the old hash)."""
    key_id, ciphertext, encoding = record_seal(
        record_cipher(), canonical=canonical_json(document), record_id=version.record_id, version=version.version
    )
    RecordVersion.objects.filter(pk=version.pk).update(key_id=key_id, ciphertext=ciphertext, content_encoding=encoding)


def test_a_batch_resumed_after_its_log_encrypts_only_content_unchanged_since_the_gate(
    consented, clinician, models_registered, blob_dir, eager, monkeypatch
):
    (_, _, intact), (_, _, rewritten), (_, _, unreadable) = consented
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))

    def worker_dies(*args, **kwargs):
        raise SystemExit("the worker died after logging the batch")

    with monkeypatch.context() as patch:
        patch.setattr("analytics.pipeline._encrypt", worker_dies)
        with pytest.raises(SystemExit):
            analysis_batch_advance(batch_id=batch_id)
    batch = AnalysisBatch.objects.get(pk=batch_id)
    assert (batch.status, batch.admitted_count) == (BatchStatus.LOGGED, 3)  # gated and logged: all three admitted

    version = RecordVersion.objects.get(record=rewritten)
    document = record_version_document(record_version=version)
    for entry in document["entry"]:
        if entry["resource"].get("valueQuantity"):
            entry["resource"]["valueQuantity"]["value"] = 0.0001
    _reseal(version, document)
    damaged = RecordVersion.objects.get(record=unreadable)
    flipped = bytearray(damaged.ciphertext)
    flipped[30] ^= 1
    RecordVersion.objects.filter(pk=damaged.pk).update(ciphertext=bytes(flipped))

    order = analysis_batch_advance(batch_id=batch_id)  # the redelivered task resumes at the encryption

    batch = AnalysisBatch.objects.get(pk=batch_id)
    assert order is not None
    assert batch.status == BatchStatus.ENCRYPTED
    assert [chunk["record_ids"] for chunk in batch.column_keys] == [[str(intact.id)]]
    assert batch.admitted_count == 1
    # The features kept at ingest are bound to the record's stored ciphertext: rewritten or damaged, the record no
    # longer lets them open, and neither is encrypted.
    assert batch.refusals == {"content_unavailable": 2}


def test_a_task_finding_the_log_step_claimed_by_another_logs_nothing_and_the_claimant_redelivered_takes_it_over(
    consented, clinician, models_registered, ledger, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))

    def ledger_gone(**kwargs):
        raise LedgerUnavailable("no answer")

    with monkeypatch.context() as patch:
        patch.setattr("analytics.pipeline.access_batch_log", ledger_gone)
        with pytest.raises(LedgerNotAnswering):
            analysis_batch_advance(batch_id=batch_id, claimant="first-message")
    batch = AnalysisBatch.objects.get(pk=batch_id)
    assert (batch.status, batch.log_claimed_by) == (BatchStatus.GATED, "")  # let go, for the retry

    assert log_claim(batch_id=batch_id, claimant="first-message") is True  # it logs... and its process is killed
    assert log_claim(batch_id=batch_id, claimant="duplicate-message") is False
    height = ledger.height()
    assert analysis_batch_advance(batch_id=batch_id, claimant="duplicate-message") is None  # stops, submits nothing
    assert analysis_batch_advance(batch_id=batch_id) is None
    assert ledger.height() == height
    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.GATED

    # The killed task's message, delivered again (reject-on-worker-lost), carries the same id: it goes on.
    assert analysis_batch_advance(batch_id=batch_id, claimant="first-message") is not None
    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.ENCRYPTED
    assert len(ledger_access_events(ledger, request.pk)) == 3


def test_the_sweep_takes_over_a_log_step_claimed_by_a_task_that_never_came_back(
    consented, clinician, models_registered, ledger, blob_dir, eager, monkeypatch
):
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    (batch_id,) = analysis_start(request_id=str(request.pk))
    with monkeypatch.context() as patch:
        patch.setattr("analytics.pipeline.log_claim", lambda **kwargs: False)  # gated; the log step is someone's
        assert analysis_batch_advance(batch_id=batch_id) is None
    assert log_claim(batch_id=batch_id, claimant="lost-message") is True

    age(AnalysisBatch, batch_id)
    resume_stalled_analyses.apply()

    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    assert AnalysisBatch.objects.get(pk=batch_id).status == BatchStatus.SCORED
    assert AccessEvent.objects.filter(request_id=str(request.pk), kind="record_access").count() == 3
