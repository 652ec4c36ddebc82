"""The three organisations of network/fabric.sh do not share a trust domain, on the running network:
each organisation's processes (orderers, peers, chaincode services) are given paths into their own
organisation's private folder and the public folder only; no private key is published; each
chaincode service admits only its own organisation's peers; and with peer0.hospital down, the
research organisation's gateway still collects a hospital endorsement, from peer1.hospital."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import grpc
import pytest

from ledger.contracts import Contracts
from ledger.fabric import FabricLedger
from tests.fabric.blocks import endorser_names
from tests.fabric.network import NODES, FabricNetwork, until_available

pytestmark = pytest.mark.fabric

ORGANISATIONS = ("ordering", "hospital", "research")


def organisation_of(node: str) -> str:
    return node.rsplit(".", 1)[1]


def what_a_process_names(pid: int) -> list[str]:
    """Everything a process was told or holds open: its environment, its command line, its working folder
    and the targets of its open file descriptors."""
    proc = Path("/proc") / str(pid)
    named = [*(proc / "environ").read_bytes().split(b"\0"), *(proc / "cmdline").read_bytes().split(b"\0")]
    texts = [item.decode(errors="replace") for item in named if item]
    texts.append(os.readlink(proc / "cwd"))
    for descriptor in (proc / "fd").iterdir():
        try:
            texts.append(os.readlink(descriptor))
        except OSError:  # closed meanwhile
            continue
    return texts


def test_no_process_of_an_organisation_names_another_organisations_private_folder(fabric_network: FabricNetwork):
    private = {org: f"{fabric_network.directory}/orgs/{org}" for org in ORGANISATIONS}
    for node in NODES:
        own = organisation_of(node)
        pids = fabric_network.processes(node)
        assert pids, node
        names = [text for pid in pids for text in what_a_process_names(pid)]
        # What it was given lives in its own folder (so the check below looks at the real paths) ...
        assert any(private[own] in text for text in names), node
        # ... and nothing in any other organisation's.
        for other in set(ORGANISATIONS) - {own}:
            leaks = [text for text in names if private[other] in text]
            assert leaks == [], f"{node} names {other}'s private folder: {leaks}"


def private_keys(folder: Path) -> list[Path]:
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and (path.parent.name == "keystore" or path.suffix == ".key" or path.name.endswith("_sk"))
    ]


def test_private_keys_stay_in_their_organisations_folder_and_none_is_published(fabric_network: FabricNetwork):
    public = [path for path in (fabric_network.directory / "public").rglob("*") if path.is_file()]
    published = {path.read_bytes() for path in public}
    assert public
    for path in public:
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    for org in ORGANISATIONS:
        folder = fabric_network.directory / "orgs" / org
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, org
        keys = private_keys(folder)
        # Its CA keys, its nodes' keys, its admin's and users' keys: all generated in its own folder.
        assert len(keys) >= 4, org
        for key in keys:
            assert key.read_bytes() not in published, key
            assert not any(path.name == key.name and path.read_bytes() == key.read_bytes() for path in public)
    # The channel's genesis block was built from the public folder: it names no private folder.
    block = (fabric_network.directory / "public" / "channel" / "health.block").read_bytes()
    assert b"/orgs/" not in block
    assert b"PRIVATE KEY" not in block


def chaincode_channel_ready(network: FabricNetwork, service: str, client_org: str, wait: float = 5) -> bool:
    """Whether `client_org`'s chaincode-client certificate gets a TLS connection to `service`'s chaincode service."""
    port = network.script_environment[f"{service.upper()}_CHAINCODE_PORT"]
    tls = network.directory / "orgs" / client_org / "peers" / f"chaincode-client.{client_org}" / "tls"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(network.directory / "public" / service / "tlsca.pem").read_bytes(),
        private_key=(tls / "server.key").read_bytes(),
        certificate_chain=(tls / "server.crt").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=wait)
        except grpc.FutureTimeoutError:
            return False
    return True


def test_each_chaincode_service_admits_only_its_own_organisations_peers(fabric_network: FabricNetwork):
    assert chaincode_channel_ready(fabric_network, "hospital", "hospital")
    assert chaincode_channel_ready(fabric_network, "research", "research")
    # Refused at the handshake: no connection however long one waits (a second is plenty on 127.0.0.1).
    assert not chaincode_channel_ready(fabric_network, "hospital", "research", wait=1)
    assert not chaincode_channel_ready(fabric_network, "research", "hospital", wait=1)


def test_the_client_settings_list_both_gateways_and_trust_both_tls_cas(fabric_network: FabricNetwork):
    environment = fabric_network.client_environment
    endpoints = environment["LEDGER_URL"].removeprefix("fabric://").split("/")[0].split(",")
    ports = fabric_network.script_environment
    assert endpoints == [f"127.0.0.1:{ports['HOSPITAL_PEER0_PORT']}", f"127.0.0.1:{ports['RESEARCH_PEER0_PORT']}"]
    bundle = Path(environment["FABRIC_TLS_CA_PATH"]).read_text()
    for org in ("hospital", "research"):
        assert (fabric_network.directory / "public" / org / "tlsca.pem").read_text() in bundle
    assert "PRIVATE KEY" not in bundle


def test_with_peer0_hospital_down_the_research_gateway_gets_the_hospital_endorsement_from_peer1(
    fabric_network: FabricNetwork,
):
    research_gateway = fabric_network.ledger_url.removeprefix("fabric://").split("/")[0].split(",")[1]
    environment = {**fabric_network.client_environment, "FABRIC_DEADLINE_SECONDS": "10", "FABRIC_SUBMIT_RETRIES": "0"}
    client = FabricLedger.from_url(f"fabric://{research_gateway}/health/health", environ=environment)
    contracts = Contracts(client)
    try:
        with fabric_network.stopped("peer0.hospital"):
            # The research peer's gossip drops the frozen peer within seconds; until then its gateway may
            # still pick it, and says so as LedgerUnavailable.
            anchored = until_available(
                lambda: contracts.anchor_model(name=f"failover-{uuid.uuid4().hex}", version="1", sha256="d" * 64),
                seconds=90,
            )
            block = client._block(client.locate(anchored.tx_id).block_number)
        assert sorted(endorser_names(block, client.chaincode)[anchored.tx_id]) == ["peer0.research", "peer1.hospital"]
    finally:
        client.close()
    # peer0.hospital back: wait until its gateway (the first in LEDGER_URL) serves again, for the tests after.
    hospital = fabric_network.open_ledger()
    try:
        until_available(lambda: Contracts(hospital).anchor_model(name="failover-healed", version="1", sha256="e" * 64))
    finally:
        hospital.close()


@pytest.mark.parametrize(("organisation", "msp"), [("hospital", "HospitalMSP"), ("research", "ResearchMSP")])
def test_each_organisations_platform_instance_gets_its_own_client_identity(
    fabric_network: FabricNetwork, tmp_path: Path, organisation: str, msp: str
):
    """`fabric.sh export-client DIR "" ORG` (what each organisation's platform instance mounts in the compose stack):
    ORG's own User1, its key readable by its owner only, its own gateway peer first, and it reaches the ledger."""
    exported = tmp_path / organisation
    result = fabric_network.run("export-client", str(exported), "", organisation)
    assert result.returncode == 0, result.stderr[-2000:]
    environment = dict(line.partition("=")[::2] for line in (exported / "client.env").read_text().splitlines())
    assert environment["FABRIC_MSP_ID"] == msp
    gateways = environment["LEDGER_URL"].split("//")[1].split("/")[0].split(",")
    own_first = fabric_network.client_environment_of(organisation)["LEDGER_URL"].split("//")[1].split("/")[0]
    assert gateways == own_first.split(",")
    other = "research" if organisation == "hospital" else "hospital"
    assert gateways[0] != fabric_network.client_environment_of(other)["LEDGER_URL"].split("//")[1].split(",")[0]
    assert stat.S_IMODE((exported / "key.pem").stat().st_mode) == 0o600
    ledger = FabricLedger.from_url(environment["LEDGER_URL"], environ=environment)
    try:
        assert ledger.height() > 0
    finally:
        ledger.close()
