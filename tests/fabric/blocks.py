"""Who endorsed what, read from committed Fabric blocks: each endorsement's identity, checked as Fabric's
validation checks it (the endorser's key signs the proposal response payload followed by the endorser's
serialised identity) and traced to the organisation's certificate authority as the organisation published it
(the network's public folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, transaction_pb2

from ledger.fabric_blocks import ENDORSER_TRANSACTION

# The network's peer organisations (network/env.sh): MSP id -> its folder under public/ (and orgs/).
ORGANISATIONS = {"HospitalMSP": "hospital", "ResearchMSP": "research"}


def organisation_authorities(public_folder: Path) -> dict[str, list[x509.Certificate]]:
    """MSP id -> the root certificates of its published MSP (what a peer's certificate must be issued by)."""
    return {
        msp_id: [
            x509.load_pem_x509_certificate(path.read_bytes())
            for path in sorted((public_folder / folder / "msp" / "cacerts").glob("*.pem"))
        ]
        for msp_id, folder in ORGANISATIONS.items()
    }


def endorsing_peers(block: Any, chaincode: str, authorities: dict[str, list[x509.Certificate]]) -> dict[str, list[str]]:
    """tx_id -> the MSP ids of the endorsements each `chaincode` transaction of `block` carries, in order.

    An endorsement counts for an MSP only if its signature verifies with the endorser's certificate, that
    certificate is issued by one of the MSP's root certificates, and it names a peer (organisational unit
    "peer"); any other endorsement fails the caller's assertion with AssertionError naming the transaction.
    """
    return {
        tx_id: [
            _verified_msp(tx_id, endorsed.proposal_response_payload, endorsement, authorities)
            for endorsement in endorsed.endorsements
        ]
        for tx_id, endorsed in _chaincode_actions(block, chaincode)
    }


def endorser_names(block: Any, chaincode: str) -> dict[str, list[str]]:
    """tx_id -> the common names of the certificates that endorsed each `chaincode` transaction (e.g.
    "peer1.hospital"), in order; unverified: endorsing_peers verifies."""
    return {
        tx_id: [
            x509.load_pem_x509_certificate(identities_pb2.SerializedIdentity.FromString(endorsement.endorser).id_bytes)
            .subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
            .value
            for endorsement in endorsed.endorsements
        ]
        for tx_id, endorsed in _chaincode_actions(block, chaincode)
    }


def _chaincode_actions(block: Any, chaincode: str) -> Iterator[tuple[str, Any]]:
    """(tx_id, endorsed action) of every transaction of `block` that calls `chaincode`."""
    for envelope_bytes in block.data.data:
        payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(envelope_bytes).payload)
        header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        if header.type != ENDORSER_TRANSACTION:
            continue
        for action in transaction_pb2.Transaction.FromString(payload.data).actions:
            action_payload = transaction_pb2.ChaincodeActionPayload.FromString(action.payload)
            proposal = proposal_pb2.ChaincodeProposalPayload.FromString(action_payload.chaincode_proposal_payload)
            if chaincode_pb2.ChaincodeInvocationSpec.FromString(proposal.input).chaincode_spec.chaincode_id.name != (
                chaincode
            ):
                continue
            yield header.tx_id, action_payload.action


def _verified_msp(
    tx_id: str, response_payload: bytes, endorsement: Any, authorities: dict[str, list[x509.Certificate]]
) -> str:
    identity = identities_pb2.SerializedIdentity.FromString(endorsement.endorser)
    certificate = x509.load_pem_x509_certificate(identity.id_bytes)
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey), (tx_id, identity.mspid)
    try:
        public_key.verify(endorsement.signature, response_payload + endorsement.endorser, ec.ECDSA(hashes.SHA256()))
    except Exception as error:  # cryptography's InvalidSignature
        raise AssertionError(f"{tx_id}: the endorsement of {identity.mspid} does not verify") from error
    assert any(_issued_by(certificate, root) for root in authorities.get(identity.mspid, [])), (
        f"{tx_id}: the endorser's certificate is not issued by {identity.mspid}'s certificate authority"
    )
    units = [
        attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    assert "peer" in units, f"{tx_id}: the endorser of {identity.mspid} is not a peer ({units})"
    return identity.mspid


def _issued_by(certificate: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(root)
    except Exception:  # ValueError (other issuer), InvalidSignature, TypeError (key type)
        return False
    return True
