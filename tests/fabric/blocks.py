"""Fabric blocks in tests: read from a real network, and built (or forged) without one.

Who endorsed what, read from committed Fabric blocks: each endorsement's identity, checked as Fabric's
validation checks it (the endorser's key signs the proposal response payload followed by the endorser's
serialised identity) and traced to the organisation's certificate authority as the organisation published it
(the network's public folder).

And a channel built in the test: organisations with their CAs (`Organisation`), a channel configuration
(`channel_config`, `config_envelope`), endorsed and signed transactions (`endorsed_envelope`), the chaincode
definition's `_lifecycle` writes, blocks signed by orderers (`signed_block`) and re-signed (`resign_block`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2, msp_principal_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from fabric_protos.peer.lifecycle import chaincode_definition_pb2, db_pb2

from ledger.fabric_blocks import ENDORSER_TRANSACTION, header_bytes, header_hash
from ledger.fabric_identity import SigningIdentity, new_nonce
from tests.certificates import certificate, pem

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


# --- a channel built in the test: organisations, a configuration, signed blocks --------------------
# What configtxgen, cryptogen, the peers and the orderers make on a real network, made here with keys
# the test holds, so that unit tests can build good chains and forge bad ones without a network.
NODE_ROLES = ("client", "peer", "admin", "orderer")
CONFIG = common_pb2.HeaderType.Value("CONFIG")
SIGNATURES = common_pb2.BlockMetadataIndex.Value("SIGNATURES")
_SIGNATURE_POLICY = policies_pb2.Policy.PolicyType.Value("SIGNATURE")
_IMPLICIT_META = policies_pb2.Policy.PolicyType.Value("IMPLICIT_META")


class Organisation:
    """An organisation's certificate authority (NodeOUs on, as cryptogen makes it) and its members."""

    def __init__(self, msp_id: str):
        self.msp_id = msp_id
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = certificate(f"ca.{msp_id.lower()}", self.ca_key, ca=True)

    def member(self, role: str, name: str | None = None) -> SigningIdentity:
        """A signing identity of this MSP whose certificate carries the node role `role`."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(
            name or f"{role}.{self.msp_id.lower()}", key, issuer=self.ca, issuer_key=self.ca_key, unit=role
        )
        return SigningIdentity(self.msp_id, pem(cert), key)

    def msp_value(self) -> bytes:
        ca_pem = pem(self.ca)
        node_ous = msp_config_pb2.FabricNodeOUs(enable=True)
        for role in NODE_ROLES:
            getattr(node_ous, f"{role}_ou_identifier").CopyFrom(
                msp_config_pb2.FabricOUIdentifier(certificate=ca_pem, organizational_unit_identifier=role)
            )
        fabric = msp_config_pb2.FabricMSPConfig(name=self.msp_id, root_certs=[ca_pem], fabric_node_ous=node_ous)
        return msp_config_pb2.MSPConfig(type=0, config=fabric.SerializeToString()).SerializeToString()


def signature_policy(rule: str, *principals: tuple[str, str], needed: int | None = None) -> Any:
    """A SignaturePolicyEnvelope: `needed` (OR: 1, AND: all) of the (MSP id, role) principals."""
    envelope = policies_pb2.SignaturePolicyEnvelope()
    envelope.rule.n_out_of.n = needed if needed is not None else (1 if rule == "OR" else len(principals))
    for index, (msp_id, role) in enumerate(principals):
        envelope.rule.n_out_of.rules.add().signed_by = index
        role_value = msp_principal_pb2.MSPRole.MSPRoleType.Value(role.upper())
        envelope.identities.add().principal = msp_principal_pb2.MSPRole(
            msp_identifier=msp_id, role=role_value
        ).SerializeToString()
    return envelope


def _signature(envelope: Any) -> Any:
    return configtx_pb2.ConfigPolicy(
        policy=policies_pb2.Policy(type=_SIGNATURE_POLICY, value=envelope.SerializeToString())
    )


def _implicit(rule: str, sub_policy: str) -> Any:
    meta = policies_pb2.ImplicitMetaPolicy(rule=policies_pb2.ImplicitMetaPolicy.Rule.Value(rule), sub_policy=sub_policy)
    return configtx_pb2.ConfigPolicy(policy=policies_pb2.Policy(type=_IMPLICIT_META, value=meta.SerializeToString()))


def _organisation_group(organisation: Organisation, *, orderer: bool) -> Any:
    msp = organisation.msp_id
    group = configtx_pb2.ConfigGroup()
    group.values["MSP"].value = organisation.msp_value()
    if orderer:
        writers = signature_policy("OR", (msp, "member"))
    else:
        writers = signature_policy("OR", (msp, "admin"), (msp, "client"))
        group.policies["Endorsement"].CopyFrom(_signature(signature_policy("OR", (msp, "peer"))))
    group.policies["Writers"].CopyFrom(_signature(writers))
    group.policies["Readers"].CopyFrom(_signature(signature_policy("OR", (msp, "member"))))
    group.policies["Admins"].CopyFrom(_signature(signature_policy("OR", (msp, "admin"))))
    return group


def channel_config(
    orderers: list[Organisation],
    applications: list[Organisation],
    *,
    block_validation: str = "ANY Writers",
    sequence: int = 0,
) -> Any:
    """A common.Config as configtxgen writes it from network/templates/configtx.yaml's profile."""
    channel = configtx_pb2.ConfigGroup()
    for name, organisations, orderer in (("Orderer", orderers, True), ("Application", applications, False)):
        section = channel.groups[name]
        for organisation in organisations:
            section.groups[organisation.msp_id].CopyFrom(_organisation_group(organisation, orderer=orderer))
        for policy, rule in (("Readers", "ANY Readers"), ("Writers", "ANY Writers"), ("Admins", "MAJORITY Admins")):
            section.policies[policy].CopyFrom(_implicit(*rule.split()))
    channel.groups["Orderer"].policies["BlockValidation"].CopyFrom(_implicit(*block_validation.split()))
    for policy in ("LifecycleEndorsement", "Endorsement"):
        channel.groups["Application"].policies[policy].CopyFrom(_implicit("MAJORITY", "Endorsement"))
    for policy, rule in (("Readers", "ANY Readers"), ("Writers", "ANY Writers"), ("Admins", "MAJORITY Admins")):
        channel.policies[policy].CopyFrom(_implicit(*rule.split()))
    return configtx_pb2.Config(sequence=sequence, channel_group=channel)


def config_envelope(config: Any, channel: str = "health") -> bytes:
    header = common_pb2.Header(
        channel_header=common_pb2.ChannelHeader(type=CONFIG, channel_id=channel).SerializeToString()
    )
    data = configtx_pb2.ConfigEnvelope(config=config).SerializeToString()
    return common_pb2.Envelope(
        payload=common_pb2.Payload(header=header, data=data).SerializeToString()
    ).SerializeToString()


def kv_writes(namespace: str, values: dict[str, bytes], collections: dict[str, list[bytes]] | None = None) -> Any:
    """A peer's NsReadWriteSet writing `values` to `namespace`, and key hashes to private collections."""
    written = rwset_pb2.NsReadWriteSet(
        namespace=namespace,
        rwset=kv_rwset_pb2.KVRWSet(
            writes=[kv_rwset_pb2.KVWrite(key=key, value=value) for key, value in values.items()]
        ).SerializeToString(),
    )
    for collection, key_hashes in (collections or {}).items():
        hashed = kv_rwset_pb2.HashedRWSet(hashed_writes=[kv_rwset_pb2.KVWriteHash(key_hash=h) for h in key_hashes])
        written.collection_hashed_rwset.add(collection_name=collection, hashed_rwset=hashed.SerializeToString())
    return written


def endorsed_envelope(
    signed_proposal: Any,
    endorsers: list[SigningIdentity],
    *,
    payload: bytes = b"{}",
    event: tuple[str, bytes] | None = None,
    rwsets: list[Any] = (),
    creator: SigningIdentity | None = None,
) -> common_pb2.Envelope:
    """The transaction a Gateway assembles from a proposal and its endorsements: each endorser signs the
    proposal response payload followed by its serialized identity; `creator`, when given, signs the envelope."""
    proposal = proposal_pb2.Proposal.FromString(signed_proposal.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    chaincode = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension).chaincode_id
    action = proposal_pb2.ChaincodeAction(
        response=proposal_response_pb2.Response(status=200, payload=payload),
        chaincode_id=chaincode,
        results=rwset_pb2.TxReadWriteSet(
            data_model=rwset_pb2.TxReadWriteSet.KV, ns_rwset=list(rwsets)
        ).SerializeToString(),
    )
    if event:
        action.events = chaincode_event_pb2.ChaincodeEvent(
            chaincode_id=chaincode.name, tx_id=channel_header.tx_id, event_name=event[0], payload=event[1]
        ).SerializeToString()
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(signed_proposal.proposal_bytes).digest(), extension=action.SerializeToString()
    ).SerializeToString()
    endorsed = transaction_pb2.ChaincodeEndorsedAction(
        proposal_response_payload=response_payload,
        endorsements=[
            proposal_response_pb2.Endorsement(endorser=e.creator, signature=e.sign(response_payload + e.creator))
            for e in endorsers
        ],
    )
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=proposal.payload, action=endorsed
    ).SerializeToString()
    transaction = transaction_pb2.Transaction(
        actions=[transaction_pb2.TransactionAction(header=header.signature_header, payload=action_payload)]
    )
    envelope = common_pb2.Envelope(
        payload=common_pb2.Payload(header=header, data=transaction.SerializeToString()).SerializeToString()
    )
    if creator is not None:
        envelope.signature = creator.sign(envelope.payload)
    return envelope


def lifecycle_definition_writes(chaincode: str, policy: Any) -> Any:
    """The `_lifecycle` public writes of CommitChaincodeDefinition: the definition's validation info."""
    info = chaincode_definition_pb2.ChaincodeValidationInfo(
        validation_plugin="vscc",
        validation_parameter=policies_pb2.ApplicationPolicy(signature_policy=policy).SerializeToString(),
    )
    prefix = f"namespaces/fields/{chaincode}/"
    return kv_writes(
        "_lifecycle",
        {
            f"namespaces/metadata/{chaincode}": b"",
            prefix + "Sequence": db_pb2.StateData(Int64=1).SerializeToString(),
            prefix + "ValidationInfo": db_pb2.StateData(Bytes=info.SerializeToString()).SerializeToString(),
        },
    )


def signed_block(
    number: int,
    previous: Any | None,
    envelopes: list[bytes],
    codes: list[int],
    signers: list[SigningIdentity],
    *,
    last_config: int = 0,
) -> Any:
    """A block as the orderer writes it: each signer signs metadata.value || signature header || header bytes."""
    header = common_pb2.BlockHeader(
        number=number,
        previous_hash=header_hash(previous.header) if previous is not None else b"",
        data_hash=hashlib.sha256(b"".join(envelopes)).digest(),
    )
    value = common_pb2.OrdererBlockMetadata(last_config=common_pb2.LastConfig(index=last_config)).SerializeToString()
    metadata = common_pb2.Metadata(value=value)
    header_der = header_bytes(header.number, header.previous_hash, header.data_hash)
    for signer in signers:
        signature_header = common_pb2.SignatureHeader(creator=signer.creator, nonce=new_nonce()).SerializeToString()
        metadata.signatures.add(
            signature_header=signature_header, signature=signer.sign(value + signature_header + header_der)
        )
    return common_pb2.Block(
        header=header,
        data=common_pb2.BlockData(data=envelopes),
        metadata=common_pb2.BlockMetadata(metadata=[metadata.SerializeToString(), b"", bytes(codes), b"", b""]),
    )


def resign_block(block: Any, signer: SigningIdentity, *, index: int = 0) -> None:
    """Replace the block's orderer signature `index` with one `signer` makes over the same block."""
    metadata = common_pb2.Metadata.FromString(block.metadata.metadata[SIGNATURES])
    signature_header = common_pb2.SignatureHeader(creator=signer.creator, nonce=new_nonce()).SerializeToString()
    header_der = header_bytes(block.header.number, block.header.previous_hash, block.header.data_hash)
    metadata.signatures[index].signature_header = signature_header
    metadata.signatures[index].signature = signer.sign(metadata.value + signature_header + header_der)
    block.metadata.metadata[SIGNATURES] = metadata.SerializeToString()


# --- the protobuf wire format, for messages the tests write by hand -------------------------------------------
def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, data: bytes) -> bytes:
    """Field `number` of wire type 2 (bytes, strings, messages) holding `data`."""
    return varint(number << 3 | 2) + varint(len(data)) + data
