"""A federated training run on the real Fabric network: both organisations' rounds gated and logged on the chain
(purpose training), the lineage written in one transaction endorsed by a peer of each organisation, the roots the
ledger holds equal to the kept manifest's, an inclusion proof against them, and the trained model anchored."""

import json

import pytest

from analytics.models import DiagnosticModel
from audit.models import AccessEvent
from chaincode import merkle
from health_platform import bootstrap
from tests.fabric.blocks import endorsing_peers, organisation_authorities
from tests.training.conftest import (  # noqa: F401 (fixtures)
    organisations,
    people,
    steward,
    two_instances,
)
from tests.training_world import candidates, mixed_breast_cancer_split
from training.models import TrainingStatus
from training.selectors import training_record_proof_document, training_run_lineage_differences
from training.services import training_run_execute, training_run_request

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROUNDS = 2


def test_a_training_run_on_fabric_admits_the_consented_intact_records_and_writes_an_endorsed_lineage(
    people,  # noqa: F811
    organisations,  # noqa: F811
    steward,  # noqa: F811
    ledger,
    blob_dir,
    fabric_network,
):
    assert type(ledger).__name__ == "FabricLedger"
    everyone, split = mixed_breast_cancer_split(people, organisations, 6)
    st_marys = organisations[0]
    first_block = ledger.height()

    run = training_run_request(
        steward=steward,
        family="breast-cancer",
        organisations=candidates(split),
        rounds=ROUNDS,
    )
    run = training_run_execute(run_id=str(run.pk))

    assert run.status == TrainingStatus.COMPLETED, run.failure_code
    assert {entry["record_id"] for entries in run.manifest.values() for entry in entries} == {
        str(p.record.id) for p in everyone[2:]
    }
    assert run.organisation_counts[st_marys]["refused"] == {"no_consent": 1, "hash_mismatch": 1}
    # every round of every organisation logged on the chain, refusals with their reasons
    events = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(run.pk)})).json()["events"]
    decisions = sorted(
        (e["record_id"], e["decision"], e["reason"] or "") for e in events if e["kind"] == "record_access"
    )
    expected = sorted(
        (str(p.record.id), *reason)
        for p, reason in zip(
            everyone, [("refuse", "no_consent"), ("refuse", "hash_mismatch")] + [("admit", "")] * 4, strict=True
        )
        for _ in range(ROUNDS)
    )
    assert decisions == expected
    assert AccessEvent.objects.filter(request_id=str(run.pk), kind="record_access").count() == len(expected)

    # the lineage: on the chain, valid, endorsed by a peer of each organisation, equal to the manifest's roots
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    assert lineage is not None
    assert lineage.tx_id == run.lineage_tx_id
    assert ledger.locate(lineage.tx_id).status == "VALID"
    assert training_run_lineage_differences(run=run) == []
    authorities = organisation_authorities(fabric_network.directory / "public")
    endorsed: dict[str, list[str]] = {}
    for number in range(first_block, ledger.height()):
        endorsed.update(endorsing_peers(ledger._block(number), ledger.chaincode, authorities))
    assert sorted(endorsed[lineage.tx_id]) == ["HospitalMSP", "ResearchMSP"]
    proof = training_record_proof_document(run=run, record_id=str(everyone[4].record.id))
    assert merkle.verify_document(proof)
    assert (proof["root"], proof["size"]) == (lineage.training_set_root, 4)
    # the model it produced is anchored on the chain by the weights the lineage names
    model = DiagnosticModel.objects.get(name=run.model_name, version=run.model_version)
    assert model.sha256 == lineage.weights_sha256
    assert ledger.locate(model.anchor_tx_id).status == "VALID"
    assert ledger.verify().ok


def test_a_run_federates_two_instances_on_fabric_each_organisation_with_its_own_identity(
    organisations,  # noqa: F811
    two_instances,  # noqa: F811
    ledger,
    fabric_network,
):
    """One platform instance per organisation on the real network: St Mary's (this test) as the hospital's client,
    Northgate's instance as the research organisation's (its own MSP identity, its own gateway peer first); the
    scenario of tests/training/test_two_instances.py, then Northgate's access log is found on the chain under its
    own organisation's signature."""
    research = fabric_network.client_environment_of("research")
    assert research["FABRIC_MSP_ID"] == "ResearchMSP"
    run, instance = two_instances(research)
    events = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(run.pk)})).json()["events"]
    northgate_logged = [e for e in events if e["kind"] == "record_access" and e["grantee"] == "org:northgate"]
    assert len(northgate_logged) == 5 * 2
    # Northgate's batches were submitted by its own organisation's client, and committed VALID
    transactions = instance.rows("SELECT DISTINCT tx_id FROM audit_accessevent WHERE request_id = ?", str(run.pk))
    assert transactions
    assert {submitter_msp(ledger, tx_id) for (tx_id,) in transactions} == {"ResearchMSP"}
    assert all(ledger.locate(tx_id).status == "VALID" for (tx_id,) in transactions)
    st_marys_transactions = set(AccessEvent.objects.filter(request_id=str(run.pk)).values_list("tx_id", flat=True))
    assert {submitter_msp(ledger, tx_id) for tx_id in st_marys_transactions} == {"HospitalMSP"}


def submitter_msp(ledger, tx_id: str) -> str:
    """The MSP of the client that signed transaction `tx_id`, from its envelope on the chain."""
    from fabric_protos.common import common_pb2
    from fabric_protos.msp import identities_pb2
    from fabric_protos.peer import transaction_pb2

    processed = transaction_pb2.ProcessedTransaction.FromString(ledger._query("GetTransactionByID", tx_id))
    payload = common_pb2.Payload.FromString(processed.transactionEnvelope.payload)
    header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    return identities_pb2.SerializedIdentity.FromString(header.creator).mspid
