"""The fault classification on a real Fabric network: the client's peer frozen (SIGSTOP: it accepts nothing
and answers nothing) is LedgerUnavailable for reads and writes, never a contract refusal, and the client
works again once the peer is back. Skipped, with the reason, without FABRIC_BIN_DIR."""

import pytest

from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import Contracts
from ledger.fabric import FabricLedger
from tests.fabric.network import shared_network, until_available

pytestmark = pytest.mark.fabric


@pytest.fixture
def network(request):
    return shared_network(request)


def test_a_stopped_peer_is_ledger_unavailable_never_a_refusal_and_the_client_heals(network):
    impatient = {**network.client_environment, "FABRIC_DEADLINE_SECONDS": "3", "FABRIC_SUBMIT_RETRIES": "0"}
    client = FabricLedger.from_url(network.ledger_url, environ=impatient)
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
