"""Anchoring retried by a real Celery worker process on the embedded default's broker."""

import pytest

from ledger import open_ledger
from records.models import AnchorState, RecordVersion
from records.selectors import record_integrity_check
from records.services import record_ingest
from tests.conftest import wait_for
from tests.records.factories import bundle, encode, patient_with_observations


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_anchors_what_an_ingest_left_pending(custodian, ledger_url, ledger_down, settings, celery_worker):
    """The web process cannot reach the ledger; the worker (started with the working ledger) can."""
    settings.ANCHOR_RETRY_COUNTDOWN_SECONDS = 0
    result = record_ingest(raw_body=encode(bundle(*patient_with_observations(mrn="MRN-WORKER"))), actor=custodian)
    assert [r.anchored for r in result.records] == [False]

    version = wait_for(
        lambda: RecordVersion.objects.filter(anchor_state=AnchorState.ANCHORED).first(),
        timeout=60,
        what="the worker to anchor the pending version",
    )

    anchor = open_ledger(ledger_url).evaluate("anchors", "ReadAnchor", str(version.record_id)).json()
    assert anchor["sha256"] == version.sha256
    assert anchor["tx_id"] == version.anchor_tx_id
    assert "anchor_pending_records" in celery_worker.log_path.read_text()
    ledger_down.up()
    assert record_integrity_check(record_version=version).ok
