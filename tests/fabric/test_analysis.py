"""One analysis end to end on the real Fabric network: ingest and anchoring, consents granted and
revoked on the chain, the gate and the access log per batch, CKKS scoring, and an audit trail whose
every event is a committed transaction endorsed by both organisations (read from the committed blocks).
The gate answers from the chain, not from the consent mirror, in the direction that matters: a consent
revoked on the chain is refused while the mirror still says active."""

import json

import pytest

from analytics.diagnostic_models import breast_cancer_model
from analytics.models import AnalysisStatus
from consent.models import Consent
from records.models import RecordVersion
from tests.conftest import (
    analysis_over_a_consent_revoked_on_the_ledger_only,
    every_gate_answer,
    every_gate_answer_scored,
    explicit_analysis,
)
from tests.fabric.blocks import endorsing_peers, organisation_authorities

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_mixed_cohort_on_fabric_scores_exactly_the_consented_intact_records_and_logs_every_access(
    cohort, clinician, models_registered, ledger, blob_dir, eager, monkeypatch, fabric_network
):
    assert type(ledger).__name__ == "FabricLedger"
    first_block = ledger.height()
    people = every_gate_answer(cohort, clinician, monkeypatch)

    request = explicit_analysis(clinician, people)

    assert request.status == AnalysisStatus.COMPLETED
    logged = every_gate_answer_scored(request, clinician, people)

    events = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(request.id)})).json()[
        "events"
    ]
    assert {e["record_id"]: (e["decision"], e["reason"]) for e in events if e["kind"] == "record_access"} == logged
    # One access-log transaction for the batch, committed and valid on the channel, then the batch's outcome.
    tx_ids = {e["tx_id"] for e in events if e["kind"] == "record_access"}
    assert len(tx_ids) == 1
    (access_log_tx,) = tx_ids
    assert [(e["decision"], e["reason"]) for e in events if e["kind"] == "outcome"] == [("computed", None)]
    location = ledger.locate(access_log_tx)
    assert location.status == "VALID"
    summary = ledger.block_summary(location.block_number)
    assert any(t.contract == "accesslog" and t.status == "VALID" for t in summary.transactions)
    assert ledger.verify().ok

    # Every transaction of the test (the records' anchors, the consents granted and revoked, the batch's
    # access log) carries one endorsement of a peer of each organisation, as the committed blocks hold them:
    # each signature verified, each endorser's certificate issued by its organisation's CA.
    authorities = organisation_authorities(fabric_network.directory / "public")
    endorsed: dict[str, list[str]] = {}
    for number in range(first_block, ledger.height()):
        endorsed.update(endorsing_peers(ledger._block(number), ledger.chaincode, authorities))
    consents = Consent.objects.filter(patient__in=[patient for _, patient, _ in people])
    anchors = set(
        RecordVersion.objects.filter(record__in=[record for _, _, record in people]).values_list(
            "anchor_tx_id", flat=True
        )
    )
    granted = set(consents.values_list("granted_tx_id", flat=True))
    revoked = set(consents.exclude(revoked_tx_id="").values_list("revoked_tx_id", flat=True))
    assert (len(granted), len(revoked), "" in anchors) == (5, 1, False)
    assert {access_log_tx, *anchors, *granted, *revoked} <= set(endorsed)
    both = ("HospitalMSP", "ResearchMSP")
    assert {tx_id: tuple(sorted(msps)) for tx_id, msps in endorsed.items()} == dict.fromkeys(endorsed, both)


def test_a_consent_revoked_on_fabric_while_the_mirror_says_active_is_refused_by_the_gate(
    cohort, clinician, models_registered, ledger, blob_dir, eager
):
    assert type(ledger).__name__ == "FabricLedger"
    request, record = analysis_over_a_consent_revoked_on_the_ledger_only(cohort, clinician)
    events = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(request.id)})).json()[
        "events"
    ]
    assert [
        (e["record_id"], e["decision"], e["reason"], e["model_hash"]) for e in events if e["kind"] != "outcome"
    ] == [(str(record.id), "refuse", "consent_revoked", breast_cancer_model().sha256)]
    assert request.batches.get().column_keys == []
