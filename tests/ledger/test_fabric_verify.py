"""ledger.fabric_verify over chains built in the test (tests/fabric/blocks.py): no network.

Each test builds a channel (an orderer organisation, two application organisations, NodeOUs on), a
genesis block, the chaincode's definition committed through `_lifecycle` and blocks of endorsed
transactions, signed with keys the test holds; then forges one thing and expects verify to name it.
"""

import time
from dataclasses import dataclass, field

import pytest
from fabric_protos.common import common_pb2, policies_pb2
from fabric_protos.peer import transaction_pb2

from ledger.fabric import build_proposal
from ledger.fabric_identity import SigningIdentity
from ledger.fabric_verify import verify_blocks
from tests.fabric.blocks import (
    Organisation,
    channel_config,
    config_envelope,
    endorsed_envelope,
    kv_writes,
    lifecycle_definition_writes,
    resign_block,
    signature_policy,
    signed_block,
)

CHANNEL, CHAINCODE = "health", "health"
SECRET = "5ec12e7-pseudonym-" + "c" * 46  # an argument: it must never reach a problem's text
VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")
BOTH_PEERS = "AND('HospitalMSP.peer', 'ResearchMSP.peer')"


@dataclass
class Channel:
    """The organisations of a test channel, its members, and the blocks built so far."""

    ordering: list[Organisation]
    hospital: Organisation
    research: Organisation
    orderers: list[SigningIdentity]
    client: SigningIdentity
    peers: dict[str, SigningIdentity]
    blocks: list = field(default_factory=list)
    last_config: int = 0

    def transaction(self, endorsers=None, *, creator=None, namespace=CHAINCODE, rwsets=None, chaincode=CHAINCODE):
        creator = creator or self.client
        proposal = build_proposal(creator, CHANNEL, chaincode, "anchors:AnchorRecord", ["rec-1", SECRET])
        endorsers = list(self.peers.values()) if endorsers is None else endorsers
        writes = [kv_writes(namespace, {"anchor~rec-1": SECRET.encode()})] if rwsets is None else rwsets
        envelope = endorsed_envelope(proposal.signed, endorsers, rwsets=writes, creator=creator)
        return envelope.SerializeToString()

    def append(self, envelopes, codes=None, signers=None, *, last_config=None):
        block = signed_block(
            len(self.blocks),
            self.blocks[-1] if self.blocks else None,
            envelopes,
            codes or [VALID] * len(envelopes),
            self.orderers if signers is None else signers,
            last_config=self.last_config if last_config is None else last_config,
        )
        self.blocks.append(block)
        return block

    def reconfigure(self, config, signers=None):
        self.last_config = len(self.blocks)
        return self.append([config_envelope(config)], signers=signers)

    def problems(self):
        return [(p.kind, p.ref, p.detail) for p in verify_blocks(self.blocks).problems]


def new_channel(orderer_orgs: int = 1, block_validation: str = "ANY Writers") -> Channel:
    ordering = [Organisation("OrdererMSP" if n == 0 else f"Orderer{n}MSP") for n in range(orderer_orgs)]
    hospital, research = Organisation("HospitalMSP"), Organisation("ResearchMSP")
    channel = Channel(
        ordering=ordering,
        hospital=hospital,
        research=research,
        orderers=[org.member("orderer") for org in ordering],
        client=hospital.member("client"),
        peers={"HospitalMSP": hospital.member("peer"), "ResearchMSP": research.member("peer")},
    )
    config = channel_config(ordering, [hospital, research], block_validation=block_validation)
    channel.append([config_envelope(config)], signers=[])
    both = signature_policy("AND", ("HospitalMSP", "peer"), ("ResearchMSP", "peer"))
    commit = channel.transaction(
        namespace="_lifecycle", chaincode="_lifecycle", rwsets=[lifecycle_definition_writes(CHAINCODE, both)]
    )
    channel.append([commit])
    return channel


@pytest.fixture(scope="module")
def organisations():
    """One channel's key material for the module (key generation is the slow part)."""
    return new_channel()


@pytest.fixture
def channel(organisations):
    organisations.blocks = organisations.blocks[:2]
    organisations.last_config = 0
    return organisations


def test_a_good_chain_verifies(channel):
    channel.append([channel.transaction(), channel.transaction()])
    channel.append([channel.transaction()])
    report = verify_blocks(channel.blocks)
    assert report.problems == []
    assert report.transactions == 5


def test_an_orderer_signature_from_a_foreign_certificate_authority_is_named(channel):
    channel.append([channel.transaction()])
    impostor = Organisation("OrdererMSP").member("orderer")  # the right MSP id, another CA
    resign_block(channel.blocks[2], impostor)
    assert channel.problems() == [
        ("block", "2", "orderer signature 0: the certificate is not issued by a certificate authority of OrdererMSP"),
        ("block", "2", "the orderer signatures do not satisfy /Channel/Orderer/BlockValidation (ANY Writers)"),
    ]


def test_a_flipped_orderer_signature_byte_is_named(channel):
    block = channel.append([channel.transaction()])
    metadata = common_pb2.Metadata.FromString(block.metadata.metadata[0])
    signature = bytearray(metadata.signatures[0].signature)
    signature[-5] ^= 0x01
    metadata.signatures[0].signature = bytes(signature)
    block.metadata.metadata[0] = metadata.SerializeToString()
    assert channel.problems() == [
        ("block", "2", "orderer signature 0 does not verify"),
        ("block", "2", "the orderer signatures do not satisfy /Channel/Orderer/BlockValidation (ANY Writers)"),
    ]


def test_a_block_signed_by_a_peer_is_not_signed_by_an_orderer(channel):
    channel.append([channel.transaction()], signers=[channel.peers["HospitalMSP"]])
    problems = channel.problems()
    assert ("block", "2", "orderer signature 0: the signer is not an orderer of the channel") in problems
    assert len(problems) == 2


def test_an_unsigned_block_is_named(channel):
    channel.append([channel.transaction()], signers=[])
    channel.append([channel.transaction()]).metadata.ClearField("metadata")
    assert channel.problems() == [
        ("block", "2", "the block carries no orderer signature"),
        ("block", "3", "the block carries no orderer signature"),
    ]


def test_an_endorsement_from_a_foreign_certificate_authority_is_named(channel):
    forged = Organisation("ResearchMSP").member("peer")
    channel.append([channel.transaction([channel.peers["HospitalMSP"], forged])])
    tx = _tx_id(channel.blocks[2], 0)
    assert channel.problems() == [
        (
            "transaction",
            "2/0",
            f"transaction {tx}: endorsement by ResearchMSP: "
            "the certificate is not issued by a certificate authority of ResearchMSP",
        ),
        ("transaction", "2/0", f"transaction {tx}: endorsements for chaincode health do not satisfy {BOTH_PEERS}"),
    ]


def test_a_broken_endorsement_signature_is_named(channel):
    hospital, research = channel.peers["HospitalMSP"], channel.peers["ResearchMSP"]

    class Careless(SigningIdentity):
        def sign(self, message: bytes) -> bytes:
            return super().sign(message + b"!")

    careless = Careless(research.msp_id, research.certificate_pem, research._private_key)
    channel.append([channel.transaction([hospital, careless])])
    tx = _tx_id(channel.blocks[2], 0)
    assert channel.problems() == [
        ("transaction", "2/0", f"transaction {tx}: endorsement by ResearchMSP does not verify"),
        ("transaction", "2/0", f"transaction {tx}: endorsements for chaincode health do not satisfy {BOTH_PEERS}"),
    ]


def test_a_transaction_endorsed_by_one_organisation_only_is_named(channel):
    channel.append([channel.transaction([channel.peers["HospitalMSP"]]), channel.transaction()])
    tx = _tx_id(channel.blocks[2], 0)
    assert channel.problems() == [
        ("transaction", "2/0", f"transaction {tx}: endorsements for chaincode health do not satisfy {BOTH_PEERS}")
    ]


def test_the_same_endorser_twice_counts_once_and_a_client_is_not_a_peer(channel):
    hospital = channel.peers["HospitalMSP"]
    research_client = channel.research.member("client")
    channel.append([channel.transaction([hospital, hospital]), channel.transaction([hospital, research_client])])
    details = [detail for _, _, detail in channel.problems()]
    assert len(details) == 2
    assert all(detail.endswith(f"do not satisfy {BOTH_PEERS}") for detail in details)


def test_only_valid_transactions_are_checked(channel):
    channel.append([channel.transaction([channel.peers["HospitalMSP"]])], codes=[MVCC])
    assert channel.problems() == []


def test_the_creator_must_sign_and_belong_to_an_application_organisation(channel):
    envelope = common_pb2.Envelope.FromString(channel.transaction())
    envelope.signature = channel.research.member("client").sign(envelope.payload)
    orderer_client = channel.transaction(creator=channel.ordering[0].member("client"))
    channel.append([envelope.SerializeToString(), orderer_client])
    first, second = _tx_id(channel.blocks[2], 0), _tx_id(channel.blocks[2], 1)
    assert channel.problems() == [
        ("transaction", "2/0", f"transaction {first}: the creator's signature does not verify"),
        ("transaction", "2/1", f"transaction {second}: the creator is not of an application organisation"),
    ]


def test_a_chaincode_without_definition_is_named(channel):
    channel.append([channel.transaction(namespace="other", chaincode="other")])
    tx = _tx_id(channel.blocks[2], 0)
    undefined = f"transaction {tx}: chaincode other has no definition on the channel"
    assert channel.problems() == [("transaction", "2/0", undefined)]


def test_implicit_collection_writes_need_that_organisation_s_endorsement(channel):
    approve = kv_writes("_lifecycle", {}, {"_implicit_org_ResearchMSP": [b"\x01" * 32]})
    lifecycle = {"namespace": "_lifecycle", "chaincode": "_lifecycle", "rwsets": [approve]}
    channel.append(
        [
            channel.transaction([channel.peers["ResearchMSP"]], **lifecycle),
            channel.transaction([channel.peers["HospitalMSP"]], **lifecycle),
        ]
    )
    tx = _tx_id(channel.blocks[2], 1)
    unsatisfied = "do not satisfy /Channel/Application/ResearchMSP/Endorsement (OR('ResearchMSP.peer'))"
    expected = f"transaction {tx}: endorsements for collection _implicit_org_ResearchMSP of _lifecycle {unsatisfied}"
    assert channel.problems() == [("transaction", "2/1", expected)]


def test_problems_never_carry_arguments(channel):
    forged = Organisation("ResearchMSP").member("peer")
    channel.append([channel.transaction([forged]), channel.transaction([])], signers=[forged])
    problems = verify_blocks(channel.blocks).problems
    assert len(problems) >= 5
    assert all(SECRET not in repr(problem) for problem in problems)


# --- several orderer organisations, configuration updates ---------------------------------------------
def test_a_majority_block_validation_counts_distinct_valid_orderer_signers():
    channel = new_channel(orderer_orgs=3, block_validation="MAJORITY Writers")
    first, second, third = channel.orderers
    channel.append([channel.transaction()], signers=[first, second])
    channel.append([channel.transaction()], signers=[first, third, Organisation("Orderer1MSP").member("orderer")])
    channel.append([channel.transaction()], signers=[third, third])
    channel.append([channel.transaction()], signers=[first])
    policy = "the orderer signatures do not satisfy /Channel/Orderer/BlockValidation (MAJORITY Writers)"
    assert channel.problems() == [
        ("block", "3", "orderer signature 2: the certificate is not issued by a certificate authority of Orderer1MSP"),
        ("block", "4", policy),
        ("block", "5", policy),
    ]


def test_the_configuration_in_force_decides_who_may_sign():
    channel = new_channel()
    newcomer = Organisation("NewOrdererMSP")
    newcomer_orderer = newcomer.member("orderer")
    channel.append([channel.transaction()], signers=[newcomer_orderer])  # 2: not yet an orderer
    updated = channel_config([*channel.ordering, newcomer], [channel.hospital, channel.research], sequence=1)
    channel.reconfigure(updated)  # 3: signed under the old configuration
    channel.append([channel.transaction()], signers=[newcomer_orderer])  # 4: now it is
    channel.append([channel.transaction()], last_config=0)  # 5: names the wrong configuration block
    problems = channel.problems()
    assert ("block", "2", "orderer signature 0: the signer is not an orderer of the channel") in problems
    assert [p for p in problems if p[1] != "2"] == [
        ("block", "5", "the signed last configuration index is not the last config block")
    ]


def test_a_policy_of_an_unknown_type_is_named_not_passed():
    channel = new_channel()
    config = channel_config(channel.ordering, [channel.hospital, channel.research], sequence=1)
    config.channel_group.groups["Orderer"].policies["BlockValidation"].policy.type = policies_pb2.Policy.MSP
    channel.reconfigure(config)
    channel.append([channel.transaction()])
    assert channel.problems() == [
        (
            "block",
            "3",
            "the orderer signatures cannot be checked against /Channel/Orderer/BlockValidation: "
            "policy type MSP is not supported",
        )
    ]


def test_verifying_a_thousand_blocks_takes_seconds_not_minutes(channel):
    envelopes = [channel.transaction() for _ in range(3)]
    for _ in range(1000):
        channel.append(envelopes)
    started = time.perf_counter()
    report = verify_blocks(channel.blocks)
    elapsed = time.perf_counter() - started
    assert report.problems == []
    print(f"verified {len(channel.blocks)} blocks, {report.transactions} transactions in {elapsed:.2f} s")
    assert elapsed < 20


def _tx_id(block, index: int) -> str:
    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(block.data.data[index]).payload)
    return common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id
