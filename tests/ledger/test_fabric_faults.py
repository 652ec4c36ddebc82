"""Faults on a real Fabric network.

The fault classification: a client whose only gateway peer is frozen (SIGSTOP: it accepts nothing and answers
nothing) gets LedgerUnavailable for reads and writes, never a contract refusal, and works again once the peer is
back. Failover: the platform's client, configured with both organisations' gateways, goes on reading, writing and
gating through the research peer's gateway while the hospital's peer is frozen (the hospital's endorsement then
comes from its second peer), and returns to its own peer once that is back. Skipped, with the reason, without
FABRIC_BIN_DIR."""

import time
import uuid
from datetime import UTC, datetime

import pytest

from chaincode.validation import format_timestamp
from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import AccessItem, AnchorRequest, Contracts
from ledger.fabric import FabricLedger
from tests.fabric.network import shared_network, until_available

pytestmark = pytest.mark.fabric


@pytest.fixture
def network(request):
    return shared_network(request)


def test_a_stopped_peer_is_ledger_unavailable_never_a_refusal_and_the_client_heals(network):
    impatient = {**network.client_environment, "FABRIC_DEADLINE_SECONDS": "3", "FABRIC_SUBMIT_RETRIES": "0"}
    gateways = network.ledger_url.split("/")[2]
    own_peer_only = network.ledger_url.replace(gateways, gateways.split(",")[0])
    client = FabricLedger.from_url(own_peer_only, environ=impatient)
    contracts = Contracts(client)
    try:
        height = contracts.height()
        with network.stopped("peer0.hospital"):
            for call in (
                lambda: contracts.read_anchor("no-such-record"),
                lambda: contracts.anchor_model(name="fault-test", version="1", sha256="c" * 64),
                contracts.height,
            ):
                with pytest.raises(LedgerUnavailable) as raised:
                    call()
                assert not isinstance(raised.value, ContractRejected)
        # Back: the peer answers at once; its gateway may need a few seconds of gossip to count the other
        # organisation's peer again, and says so as LedgerUnavailable (what the platform retries on).
        assert contracts.read_anchor("no-such-record") is None  # a refusal read as "absent", as before the fault
        anchored = until_available(lambda: contracts.anchor_model(name="fault-test", version="1", sha256="c" * 64))
        assert anchored.tx_id
        assert contracts.height() > height
    finally:
        client.close()


def test_with_its_own_peer_frozen_the_client_reads_writes_and_gates_through_the_other_organisation(network):
    settings = {**network.client_environment, "FABRIC_DEADLINE_SECONDS": "5", "FABRIC_FAILOVER_SECONDS": "2"}
    client = FabricLedger.from_url(network.ledger_url, environ=settings)
    own, other = client.endpoints
    contracts = Contracts(client)
    record = f"failover-{uuid.uuid4().hex}"
    try:
        with network.stopped("peer0.hospital"):
            # Writes and the endorsed gate may wait a few seconds for the research peer's gossip to drop the frozen
            # peer from its endorsement plans (LedgerUnavailable until then); reads go over at once.
            until_available(lambda: contracts.anchor_records([AnchorRequest(record, "f" * 64, "a" * 64, 1)]), 90)
            assert client.endpoint == other
            assert contracts.read_anchor(record).sha256 == "a" * 64
            gate = until_available(
                lambda: contracts.check_access_batch(
                    grantee="clinician:failover",
                    organisation=None,
                    purpose="treatment",
                    at=format_timestamp(datetime.now(UTC)),
                    items=[AccessItem(record, "imaging", "a" * 64), AccessItem(f"{record}-none", "imaging", "b" * 64)],
                ),
                60,
            )
            assert [(d.decision, d.reason) for d in gate] == [("refuse", "no_consent"), ("refuse", "no_anchor")]
        time.sleep(2.1)
        assert client.endpoint == own  # back to its own organisation's peer by itself
        assert until_available(lambda: contracts.read_anchor(record)).sha256 == "a" * 64
    finally:
        client.close()
