"""FabricLedger.verify() on the real network's chain, and forgeries of its real blocks named by ledger.fabric_verify."""

import hashlib
import os
import time

import pytest
from fabric_protos.common import common_pb2, policies_pb2
from fabric_protos.peer import transaction_pb2

from ledger.fabric_channel import describe_signature_policy
from ledger.fabric_verify import verify_blocks
from tests.fabric.blocks import Organisation, resign_block

pytestmark = pytest.mark.fabric

BOTH_PEERS = "AND('HospitalMSP.peer', 'ResearchMSP.peer')"


@pytest.fixture
def ledger(fabric_network):
    client = fabric_network.open_ledger()
    yield client
    client.close()


def anchor(ledger) -> str:
    record = "rec-" + os.urandom(8).hex()
    digest = hashlib.sha256(record.encode()).hexdigest()
    pseudonym = hashlib.sha256(digest.encode()).hexdigest()
    return ledger.submit("anchors", "AnchorRecord", record, pseudonym, digest, "1").tx_id


@pytest.fixture
def chain(ledger):
    """The real chain after a few transactions, every block of it."""
    for _ in range(3):
        anchor(ledger)
    return [ledger._block(number) for number in range(ledger.height())]


def test_the_real_chain_verifies_with_no_problems(ledger, chain):
    started = time.perf_counter()
    report = ledger.verify()
    elapsed = time.perf_counter() - started
    assert report.problems == ()
    assert report.height >= len(chain)
    print(f"verify(): {report.height} blocks, {report.transactions} transactions in {elapsed:.3f} s")


def test_the_endorsement_policy_is_read_from_the_chain(ledger, chain):
    verifier = verify_blocks(chain)
    definition = verifier.definitions[ledger.chaincode]
    assert definition.plugin == "vscc"
    policy = policies_pb2.ApplicationPolicy.FromString(definition.parameter)
    assert describe_signature_policy(policy.signature_policy) == BOTH_PEERS
    assert verifier.config is not None
    assert verifier.config.application_msps == {"HospitalMSP", "ResearchMSP"}
    assert "OrdererMSP" in verifier.config.orderer_msps


def test_a_real_block_re_signed_with_a_forged_orderer_key_is_named(chain):
    forged = chain[-1]
    resign_block(forged, Organisation("OrdererMSP").member("orderer"))
    problems = [(p.kind, p.ref, p.detail) for p in verify_blocks(chain).problems]
    number = str(len(chain) - 1)
    foreign = "orderer signature 0: the certificate is not issued by a certificate authority of OrdererMSP"
    assert problems == [
        ("block", number, foreign),
        ("block", number, "the orderer signatures do not satisfy /Channel/Orderer/BlockValidation (ANY Writers)"),
    ]


def test_a_real_transaction_stripped_of_one_endorsement_is_named(ledger, chain):
    block = chain[-1]
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    assert len(action.action.endorsements) == 2
    del action.action.endorsements[1]
    transaction.actions[0].payload = action.SerializeToString()
    payload.data = transaction.SerializeToString()
    envelope.payload = payload.SerializeToString()
    block.data.data[0] = envelope.SerializeToString()
    tx_id = common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id
    details = {(p.ref, p.detail) for p in verify_blocks(chain).problems}
    number = str(len(chain) - 1)
    assert (f"{number}/0", f"transaction {tx_id}: the creator's signature does not verify") in details
    assert (
        f"{number}/0",
        f"transaction {tx_id}: endorsements for chaincode {ledger.chaincode} do not satisfy {BOTH_PEERS}",
    ) in details
    assert (number, "data_hash does not match the block's transactions") in details
