"""One analysis end to end on the real Fabric network: ingest and anchoring, consents granted and
revoked on the chain, the gate and the access log per batch, CKKS scoring, and an audit trail whose
every event is a committed transaction endorsed by both organisations."""

import json
import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from consent.services import consent_revoke
from records.codes import BREAST_CANCER_DATASET
from records.demo import demo_patients
from records.models import RecordVersion
from tests.analytics.conftest import grant

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_mixed_cohort_on_fabric_scores_exactly_the_consented_intact_records_and_logs_every_access(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    assert type(ledger).__name__ == "FabricLedger"
    people = cohort(6)
    (u0, p0, r0), (_, _p1, r1), (u2, p2, r2), (u3, p3, r3), (u4, p4, r4), (u5, p5, r5) = people
    grant(u0, p0, clinician)  # consented and intact: the only record scored
    grant(u2, p2, clinician, valid_until=timezone.now() + timedelta(seconds=1))  # expires before the batch
    consent_revoke(actor=u3, consent=grant(u3, p3, clinician))  # revoked before the batch
    grant(u4, p4, clinician, categories=["laboratory"])  # does not cover imaging
    grant(u5, p5, clinician)  # consented, but its stored ciphertext is tampered with
    version5 = RecordVersion.objects.get(record=r5)
    tampered = bytearray(version5.ciphertext)
    tampered[40] ^= 1
    RecordVersion.objects.filter(pk=version5.pk).update(ciphertext=bytes(tampered))
    time.sleep(1.2)

    request = analysis_request_create(
        requester=clinician,
        model_name="breast-cancer",
        cohort_kind="explicit",
        pseudonyms=[p.pseudonym for _, p, _ in people],
    )

    request.refresh_from_db()
    assert request.status == AnalysisStatus.COMPLETED
    results = analysis_results(request=request, viewer=clinician)
    assert [row.record_id for row in results.rows] == [str(r0.id)]
    model = breast_cancer_model()
    features = np.asarray(demo_patients(dataset=BREAST_CANCER_DATASET, count=1)[0].features)[None, :]
    expected = model.interpret(model.score_plain(features))[0]
    assert results.rows[0].label == expected["label"]
    assert abs(results.rows[0].score - expected["score"]) < 1e-3

    events = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(request.id)})).json()[
        "events"
    ]
    assert {e["record_id"]: (e["decision"], e["reason"]) for e in events} == {
        str(r0.id): ("admit", None),
        str(r1.id): ("refuse", "no_consent"),
        str(r2.id): ("refuse", "consent_expired"),
        str(r3.id): ("refuse", "consent_revoked"),
        str(r4.id): ("refuse", "category_not_covered"),
        str(r5.id): ("refuse", "hash_mismatch"),
    }
    # One access-log transaction for the batch, committed and valid on the channel.
    tx_ids = {e["tx_id"] for e in events}
    assert len(tx_ids) == 1
    location = ledger.locate(tx_ids.pop())
    assert location.status == "VALID"
    summary = ledger.block_summary(location.block_number)
    assert any(t.contract == "accesslog" and t.status == "VALID" for t in summary.transactions)
    assert ledger.verify().ok
