"""One analysis end to end on the real Fabric network: ingest and anchoring, consents granted and
revoked on the chain, the gate and the access log per batch, CKKS scoring, and an audit trail whose
every event is a committed transaction endorsed by both organisations."""

import json

import pytest

from analytics.models import AnalysisStatus
from analytics.selectors import analysis_results
from tests.conftest import every_gate_answer, explicit_analysis, plain_scores

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_mixed_cohort_on_fabric_scores_exactly_the_consented_intact_records_and_logs_every_access(
    cohort, clinician, models_registered, ledger, blob_dir, eager, monkeypatch
):
    assert type(ledger).__name__ == "FabricLedger"
    people = every_gate_answer(cohort, clinician, monkeypatch)
    (_, _, r0), (_, _, r1), (_, _, r2), (_, _, r3), (_, _, r4), (_, _, r5) = people

    request = explicit_analysis(clinician, people)

    assert request.status == AnalysisStatus.COMPLETED
    results = analysis_results(request=request, viewer=clinician)
    assert [row.record_id for row in results.rows] == [str(r0.id)]
    expected = plain_scores(1)[0]
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
