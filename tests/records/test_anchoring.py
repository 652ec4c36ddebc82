"""Anchoring when the ledger is down, the retry task, reconciliation and the analysis selector."""

import json

import pytest
from django.db.models import F

from ledger import LedgerUnavailable
from records.anchoring import record_versions_anchor_pending
from records.models import AnchorState, Record, RecordVersion
from records.selectors import (
    content_sha256,
    record_integrity_check,
    record_latest_anchored_version,
    record_versions_contents,
    record_versions_usable_for_analysis,
)
from records.services import record_ingest
from records.tasks import anchor_pending_records
from tests.records.factories import (
    ObservationResourceFactory,
    PatientResourceFactory,
    bundle,
    encode,
    patient_with_observations,
)


def _ingest(custodian, *resources):
    """Ingest one bundle of `resources` as the custodian."""
    return record_ingest(raw_body=encode(bundle(*resources)), actor=custodian)


def _anchor_directly(ledger, version: RecordVersion, sha256: str | None = None):
    """Write an anchor to the ledger as if an earlier attempt had committed it."""
    return ledger.submit(
        "anchors",
        "AnchorRecords",
        json.dumps(
            [
                {
                    "record_id": str(version.record_id),
                    "patient_pseudonym": version.record.patient.pseudonym,
                    "sha256": sha256 or version.sha256,
                    "version": version.version,
                    "features_sha256": version.features_sha256,
                }
            ]
        ),
    )


@pytest.mark.django_db
def test_ingest_keeps_versions_pending_and_schedules_the_task_when_the_ledger_is_down(
    custodian, ledger, ledger_down, scheduled_anchoring, settings, django_capture_on_commit_callbacks
):
    settings.ANCHOR_RETRY_COUNTDOWN_SECONDS = 17

    with django_capture_on_commit_callbacks(execute=True):
        result = _ingest(custodian, *patient_with_observations(mrn="MRN-P"))

    [ingested] = result.records
    assert (ingested.anchored, ingested.tx_id, ingested.block_number) == (False, None, None)
    assert not result.all_anchored
    version = RecordVersion.objects.get()
    assert (version.anchor_state, version.anchor_attempts) == (AnchorState.PENDING, 1)
    assert scheduled_anchoring == [{"countdown": 17}]
    assert not ledger.evaluate("anchors", "AnchorHistory", str(version.record_id)).json()


@pytest.mark.django_db
def test_anchoring_task_anchors_pending_versions_once_the_ledger_is_back(
    custodian, ledger, ledger_down, scheduled_anchoring
):
    _ingest(custodian, *patient_with_observations(mrn="MRN-1"), *patient_with_observations(mrn="MRN-2"))
    assert list(record_versions_usable_for_analysis()) == []
    ledger_down.up()

    anchored = anchor_pending_records.apply().get()

    assert anchored == 2
    versions = list(RecordVersion.objects.select_related("record"))
    assert {v.anchor_state for v in versions} == {AnchorState.ANCHORED}
    assert len({v.anchor_tx_id for v in versions}) == 1  # one ledger transaction for the batch
    for version in versions:
        assert ledger.evaluate("anchors", "ReadAnchor", str(version.record_id)).json()["sha256"] == version.sha256
        assert record_integrity_check(record_version=version).ok
    assert sorted(v.pk for v in record_versions_usable_for_analysis()) == sorted(v.pk for v in versions)


@pytest.mark.django_db
def test_anchoring_task_retries_while_the_ledger_stays_down(custodian, ledger_down, scheduled_anchoring):
    _ingest(custodian, *patient_with_observations())

    # Run eagerly, a retry runs at once: every retry is spent, then the task fails.
    result = anchor_pending_records.apply()

    assert isinstance(result.result, LedgerUnavailable)
    version = RecordVersion.objects.get()
    assert version.anchor_state == AnchorState.PENDING
    # One attempt by the ingest, then the task's first run and each of its retries.
    assert version.anchor_attempts == 1 + 1 + anchor_pending_records.max_retries


@pytest.mark.django_db
def test_anchoring_twice_does_nothing_the_second_time(custodian, ledger, ledger_down, scheduled_anchoring):
    _ingest(custodian, *patient_with_observations())
    ledger_down.up()
    record_versions_anchor_pending(limit=10)
    height = ledger.height()
    before = list(RecordVersion.objects.values_list("anchor_tx_id", "anchor_block", "anchored_at"))

    run = record_versions_anchor_pending(limit=10)

    assert (run.anchored, run.unresolved, run.remaining) == (0, 0, False)
    assert ledger.height() == height
    assert list(RecordVersion.objects.values_list("anchor_tx_id", "anchor_block", "anchored_at")) == before


@pytest.mark.django_db
def test_anchoring_reconciles_a_version_the_ledger_already_holds(custodian, ledger, ledger_down, scheduled_anchoring):
    _ingest(custodian, *patient_with_observations())
    version = RecordVersion.objects.select_related("record__patient").get()
    earlier = _anchor_directly(ledger, version)  # committed, but the answer never reached the database
    ledger_down.up()

    run = record_versions_anchor_pending(limit=10)

    version.refresh_from_db()
    assert (run.anchored, run.unresolved) == (1, 0)
    assert version.anchor_state == AnchorState.ANCHORED
    assert version.anchor_tx_id == earlier.tx_id
    assert len(ledger.evaluate("anchors", "AnchorHistory", str(version.record_id)).json()) == 1
    assert record_integrity_check(record_version=version).ok


@pytest.mark.django_db
def test_anchoring_leaves_pending_a_version_the_ledger_holds_with_another_hash(
    custodian, ledger, ledger_down, scheduled_anchoring
):
    _ingest(custodian, *patient_with_observations(mrn="MRN-C"), *patient_with_observations(mrn="MRN-D"))
    conflicting, clean = RecordVersion.objects.select_related("record__patient").order_by("pk")
    _anchor_directly(ledger, conflicting, sha256="f" * 64)
    ledger_down.up()

    run = record_versions_anchor_pending(limit=10)

    conflicting.refresh_from_db()
    clean.refresh_from_db()
    assert (run.anchored, run.unresolved) == (1, 1)
    assert conflicting.anchor_state == AnchorState.PENDING
    assert clean.anchor_state == AnchorState.ANCHORED
    assert [v.pk for v in record_versions_usable_for_analysis()] == [clean.pk]


@pytest.mark.django_db
def test_pending_versions_are_anchored_in_order_when_the_record_changes_again(
    custodian, ledger, ledger_down, scheduled_anchoring
):
    patient = PatientResourceFactory(mrn="MRN-O")
    _ingest(custodian, patient, ObservationResourceFactory(patient=patient, value=1.0))
    ledger_down.up()

    result = _ingest(custodian, patient, ObservationResourceFactory(patient=patient, value=2.0))

    assert [(r.version, r.anchored) for r in result.records] == [(2, True)]
    record = Record.objects.get()
    assert set(record.versions.values_list("anchor_state", flat=True)) == {AnchorState.ANCHORED}
    history = ledger.evaluate("anchors", "AnchorHistory", str(record.pk)).json()
    assert [entry["value"]["version"] for entry in history] == [1, 2]


@pytest.mark.django_db
def test_analysis_uses_the_latest_anchored_version_never_a_pending_one(
    custodian, ledger, ledger_down, scheduled_anchoring
):
    ledger_down.up()
    patient = PatientResourceFactory(mrn="MRN-L")
    _ingest(custodian, patient, ObservationResourceFactory(patient=patient, value=1.0))
    ledger_down.down()
    _ingest(custodian, patient, ObservationResourceFactory(patient=patient, value=2.0))
    record = Record.objects.get()

    usable = list(record_versions_usable_for_analysis())

    assert [(v.record_id, v.version) for v in usable] == [(record.pk, 1)]
    assert record_latest_anchored_version(record=record).version == 1
    assert record.latest_version.version == 2
    assert list(record_versions_usable_for_analysis(categories=["imaging"])) == []


@pytest.mark.django_db
def test_recomputed_hashes_come_from_the_decrypted_content_not_the_stored_column(custodian):
    _ingest(custodian, *patient_with_observations(mrn="MRN-H"))
    true_hash = RecordVersion.objects.get().sha256
    RecordVersion.objects.update(sha256=F("key_id"))  # the column lies; the content does not

    [content] = record_versions_contents(version_ids=[RecordVersion.objects.get().pk])

    assert (content_sha256(content.plaintext), content.category) == (true_hash, "laboratory")
