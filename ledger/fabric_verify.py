"""Verifying a Fabric channel's blocks as a peer validates them, from the blocks alone.

`ChainVerifier` takes the blocks in order, from the genesis block, and names every fault as a
`Problem`. For every block it checks:

- the number, the data hash and the header hash chain (protoutil.BlockHeaderBytes, BlockDataHash);
- from block 1 on, the orderers' signatures (internal/peer/gossip/mcs.go VerifyBlock): each
  common.MetadataSignature in metadata[SIGNATURES] is by an identity of an orderer organisation of the
  configuration in force, valid in its MSP, and signs metadata.value || signature_header ||
  BlockHeaderBytes(header); the valid signers satisfy /Channel/Orderer/BlockValidation;
- the last configuration index the orderer signed (OrdererBlockMetadata) and, when present, the
  LAST_CONFIG metadata name the newest configuration block;

and for every VALID endorser transaction (core/common/validation, the v20 validation plugin):

- the transaction id derives from its nonce and creator; the creator is a valid member of an
  application organisation and signed the envelope's payload;
- every endorsement is by a valid member of an application organisation and signs
  proposal_response_payload || endorser;
- the verified endorsers satisfy, for each namespace the transaction invokes or writes, the endorsement
  policy of the chaincode definition in force (read from the `_lifecycle` writes of earlier valid
  transactions; `_lifecycle` itself: /Channel/Application/LifecycleEndorsement), and for writes to a
  private data collection the collection's policy (an organisation's implicit collection: its
  Endorsement policy).

The configuration in force for block n is the newest configuration block before n: block 0's (the
genesis block, the trust anchor: it carries no signatures) until a later configuration block replaces it.
Not checked: the configuration updates' own signatures and modification policies (a configuration
block is accepted when the orderers signed it), key-level (state-based) endorsement policies (a write to
a key that carries one is named as a problem), and the validation flags themselves (a peer writes them,
no one signs them). Problems never carry arguments or values: only block numbers, transaction ids,
MSP ids, chaincode names and policy names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fabric_protos.common import common_pb2, policies_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import msp_principal_pb2
from fabric_protos.peer import collection_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from fabric_protos.peer.lifecycle import chaincode_definition_pb2, db_pb2
from google.protobuf.message import DecodeError

from ledger import fabric_blocks
from ledger.client import Problem
from ledger.fabric_channel import (
    BLOCK_VALIDATION,
    LIFECYCLE_ENDORSEMENT,
    ChannelConfig,
    ConfigurationError,
    Identity,
    UnsupportedPolicy,
    describe_signature_policy,
    verify_signature,
)
from ledger.fabric_identity import transaction_id

SIGNATURES = common_pb2.BlockMetadataIndex.Value("SIGNATURES")
LAST_CONFIG = common_pb2.BlockMetadataIndex.Value("LAST_CONFIG")
CONFIG = common_pb2.HeaderType.Value("CONFIG")
VALID = transaction_pb2.TxValidationCode.Value("VALID")
LIFECYCLE = "_lifecycle"
DEFINITION_PREFIX = "namespaces/fields/"
IMPLICIT_COLLECTION_PREFIX = "_implicit_org_"
VALIDATION_PARAMETER = "VALIDATION_PARAMETER"
DEFAULT_VALIDATION_PLUGIN = "vscc"


@dataclass
class Definition:
    """What a chaincode definition says about validation: plugin, endorsement policy, collections."""

    plugin: str = ""
    parameter: bytes = b""  # a serialized common.ApplicationPolicy
    collections: dict[str, bytes | None] = field(default_factory=dict)  # name -> its ApplicationPolicy, if any


_LIFECYCLE_DEFINITION = Definition(
    plugin=DEFAULT_VALIDATION_PLUGIN,
    parameter=policies_pb2.ApplicationPolicy(channel_config_policy_reference=LIFECYCLE_ENDORSEMENT).SerializeToString(),
)


class Malformed(Exception):
    """A transaction whose structure cannot be read."""


def _parse(message: Any, data: bytes, what: str) -> Any:
    try:
        return message.FromString(bytes(data))
    except DecodeError:
        raise Malformed(f"its {what} cannot be read") from None


class ChainVerifier:
    """Add blocks in order with `add`; read `problems`, `transactions` and `last_header_hash`."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.transactions = 0
        self.last_header_hash: bytes | None = None
        self.config: ChannelConfig | None = None
        self.last_config_block: int | None = None
        self.definitions: dict[str, Definition] = {LIFECYCLE: _LIFECYCLE_DEFINITION}
        self.key_level_policies: set[tuple[str, str, bytes]] = set()  # (namespace, collection, key or key hash)
        self._next_number = 0

    def add(self, block: Any) -> None:
        number = self._next_number
        self._next_number += 1
        ref = str(number)
        self.transactions += len(block.data.data)
        if block.header.number != number:
            self._problem("block", ref, f"block carries number {block.header.number}")
        if fabric_blocks.data_hash(block) != bytes(block.header.data_hash):
            self._problem("block", ref, "data_hash does not match the block's transactions")
        if self.last_header_hash is not None and bytes(block.header.previous_hash) != self.last_header_hash:
            self._problem("block", ref, "previous_hash does not match the previous block's header hash")
        self.last_header_hash = fabric_blocks.header_hash(block.header)

        new_config = self._configuration_of(block, ref)
        if number == 0:
            if new_config is None:
                self._problem("block", ref, "the genesis block holds no channel configuration: nothing can be verified")
            self.config, self.last_config_block = new_config, 0
            return
        if self.config is None:
            return  # named once, at the genesis block
        self._check_signatures(block, ref, self.config)
        self._check_last_config(block, ref, number if new_config is not None else self.last_config_block)
        if new_config is not None:
            self.config, self.last_config_block = new_config, number
            return
        codes = fabric_blocks.validation_codes(block)
        for index, envelope_bytes in enumerate(block.data.data):
            if index < len(codes) and codes[index] == VALID:
                self._check_transaction(envelope_bytes, f"{number}/{index}", self.config)

    # --- blocks ---------------------------------------------------------------------------------
    def _problem(self, kind: str, ref: str, detail: str) -> None:
        self.problems.append(Problem(kind, ref, detail))

    def _configuration_of(self, block: Any, ref: str) -> ChannelConfig | None:
        """The configuration a configuration block carries; None for a block of transactions."""
        if len(block.data.data) != 1:
            return None
        try:
            payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(block.data.data[0]).payload)
            if common_pb2.ChannelHeader.FromString(payload.header.channel_header).type != CONFIG:
                return None
            return ChannelConfig.from_bytes(payload.data)
        except DecodeError:
            return None
        except ConfigurationError as error:
            self._problem("block", ref, f"the channel configuration cannot be read: {error}")
            return None

    def _check_signatures(self, block: Any, ref: str, config: ChannelConfig) -> None:
        metadata_list = block.metadata.metadata
        try:
            metadata = common_pb2.Metadata.FromString(
                metadata_list[SIGNATURES] if len(metadata_list) > SIGNATURES else b""
            )
        except DecodeError:
            self._problem("block", ref, "the signatures metadata cannot be read")
            return
        if not metadata.signatures:
            self._problem("block", ref, "the block carries no orderer signature")
            return
        header = fabric_blocks.header_bytes(block.header.number, block.header.previous_hash, block.header.data_hash)
        signers: dict[tuple[str, bytes], Identity] = {}
        for index, signature in enumerate(metadata.signatures):
            if not signature.signature_header:
                self._problem("block", ref, f"orderer signature {index} has no signature header")
                continue
            try:
                creator = common_pb2.SignatureHeader.FromString(signature.signature_header).creator
            except DecodeError:
                self._problem("block", ref, f"orderer signature {index} has a signature header that cannot be read")
                continue
            signer = config.identity(bytes(creator))
            signed = bytes(metadata.value) + bytes(signature.signature_header) + header
            fault = _signature_fault(signer, config.orderer_msps, signed, bytes(signature.signature))
            if fault is not None:
                self._problem("block", ref, f"orderer signature {index}" + _ORDERER_FAULTS.get(fault, f": {fault}"))
                continue
            signers.setdefault(signer.key, signer)
        signed_by = list(signers.values())
        self._check_policy_path(config, BLOCK_VALIDATION, signed_by, "block", ref, "the orderer signatures")

    def _check_last_config(self, block: Any, ref: str, expected: int | None) -> None:
        metadata_list = block.metadata.metadata
        try:
            signed = common_pb2.Metadata.FromString(
                metadata_list[SIGNATURES] if len(metadata_list) > SIGNATURES else b""
            ).value
            if signed:
                index = common_pb2.OrdererBlockMetadata.FromString(signed).last_config.index
                if index != expected:
                    self._problem("block", ref, "the signed last configuration index is not the last config block")
            if len(metadata_list) > LAST_CONFIG and metadata_list[LAST_CONFIG]:
                value = common_pb2.Metadata.FromString(metadata_list[LAST_CONFIG]).value
                if common_pb2.LastConfig.FromString(value).index != expected:
                    self._problem("block", ref, "the LAST_CONFIG metadata does not name the last config block")
        except DecodeError:
            self._problem("block", ref, "the last configuration metadata cannot be read")

    def _check_policy_path(
        self, config: ChannelConfig, path: str, identities: list[Identity], kind: str, ref: str, what: str
    ) -> None:
        policy = config.policy(path)
        try:
            if policy is None:
                raise UnsupportedPolicy(f"the channel configuration has no policy {path}")
            if not config.satisfied(policy, path.rpartition("/")[0], identities):
                self._problem(kind, ref, f"{what} do not satisfy {path} ({config.describe(policy)})")
        except UnsupportedPolicy as error:
            self._problem(kind, ref, f"{what} cannot be checked against {path}: {error}")

    # --- transactions ---------------------------------------------------------------------------
    def _check_transaction(self, envelope_bytes: bytes, ref: str, config: ChannelConfig) -> None:
        try:
            envelope = _parse(common_pb2.Envelope, envelope_bytes, "envelope")
            payload = _parse(common_pb2.Payload, envelope.payload, "payload")
            channel_header = _parse(common_pb2.ChannelHeader, payload.header.channel_header, "channel header")
        except Malformed as error:
            self._problem("transaction", ref, f"transaction at {ref}: {error}")
            return
        if channel_header.type != fabric_blocks.ENDORSER_TRANSACTION:
            return
        label = f"transaction {channel_header.tx_id}"
        try:
            self._check_endorser_transaction(envelope, payload, channel_header, ref, label, config)
        except Malformed as error:
            self._problem("transaction", ref, f"{label}: {error}")

    def _check_endorser_transaction(
        self, envelope: Any, payload: Any, channel_header: Any, ref: str, label: str, config: ChannelConfig
    ) -> None:
        signature_header = _parse(common_pb2.SignatureHeader, payload.header.signature_header, "signature header")
        creator_bytes = bytes(signature_header.creator)
        if transaction_id(bytes(signature_header.nonce), creator_bytes) != channel_header.tx_id:
            self._problem("transaction", ref, f"{label}: the transaction id does not derive from its nonce and creator")
        creator = config.identity(creator_bytes)
        if creator.msp_id not in config.application_msps:
            self._problem("transaction", ref, f"{label}: the creator is not of an application organisation")
        elif creator.error:
            self._problem("transaction", ref, f"{label}: the creator's {creator.error}")
        elif not verify_signature(creator, bytes(envelope.payload), bytes(envelope.signature)):
            self._problem("transaction", ref, f"{label}: the creator's signature does not verify")
        extension = _parse(proposal_pb2.ChaincodeHeaderExtension, channel_header.extension, "header extension")
        invoked = extension.chaincode_id.name
        transaction = _parse(transaction_pb2.Transaction, payload.data, "transaction")
        if not transaction.actions:
            self._problem("transaction", ref, f"{label}: the transaction holds no action")
        for action in transaction.actions:
            action_payload = _parse(transaction_pb2.ChaincodeActionPayload, action.payload, "action")
            endorsed = action_payload.action
            endorsers = self._endorsers(endorsed, ref, label, config)
            response = _parse(
                proposal_response_pb2.ProposalResponsePayload, endorsed.proposal_response_payload, "response"
            )
            chaincode_action = _parse(proposal_pb2.ChaincodeAction, response.extension, "chaincode action")
            rwset = _parse(rwset_pb2.TxReadWriteSet, chaincode_action.results, "read-write set")
            namespaces = self._namespaces(invoked, rwset)
            for namespace in [invoked, *(name for name in namespaces if name != invoked)]:
                self._check_namespace(namespace, namespaces.get(namespace), endorsers, ref, label, config)
            self._apply(namespaces)

    def _endorsers(self, endorsed: Any, ref: str, label: str, config: ChannelConfig) -> list[Identity]:
        response_payload = bytes(endorsed.proposal_response_payload)
        endorsers: dict[tuple[str, bytes], Identity] = {}
        for index, endorsement in enumerate(endorsed.endorsements):
            endorser = config.identity(bytes(endorsement.endorser))
            signed = response_payload + bytes(endorsement.endorser)
            fault = _signature_fault(endorser, config.application_msps, signed, bytes(endorsement.signature))
            if fault == _OUTSIDER:
                self._problem("transaction", ref, f"{label}: endorsement {index} is not by an application organisation")
            elif fault is not None:
                who = endorser.msp_id or f"endorsement {index}"
                self._problem(
                    "transaction", ref, f"{label}: endorsement by {who}" + _ENDORSER_FAULTS.get(fault, f": {fault}")
                )
            else:
                endorsers.setdefault(endorser.key, endorser)
        return list(endorsers.values())

    @staticmethod
    def _namespaces(invoked: str, rwset: Any) -> dict[str, tuple[Any, list[tuple[str, Any]]]]:
        """Namespace -> (its KVRWSet, [(collection, HashedRWSet)]) for the namespaces the action writes to."""
        written: dict[str, tuple[Any, list[tuple[str, Any]]]] = {}
        for namespace in rwset.ns_rwset:
            kv = _parse(kv_rwset_pb2.KVRWSet, namespace.rwset, "read-write set")
            collections = [
                (collection.collection_name, _parse(kv_rwset_pb2.HashedRWSet, collection.hashed_rwset, "hashed set"))
                for collection in namespace.collection_hashed_rwset
            ]
            writes = kv.writes or kv.metadata_writes
            if writes or any(hashed.hashed_writes or hashed.metadata_writes for _, hashed in collections):
                written[namespace.namespace] = (kv, collections)
        return written

    def _check_namespace(
        self,
        namespace: str,
        written: tuple[Any, list[tuple[str, Any]]] | None,
        endorsers: list[Identity],
        ref: str,
        label: str,
        config: ChannelConfig,
    ) -> None:
        definition = self.definitions.get(namespace)
        if definition is None:
            self._problem("transaction", ref, f"{label}: chaincode {namespace} has no definition on the channel")
            return
        if definition.plugin != DEFAULT_VALIDATION_PLUGIN:
            self._problem("transaction", ref, f"{label}: chaincode {namespace} uses an unknown validation plugin")
            return
        policies: dict[bytes, str] = {}  # ApplicationPolicy -> what it covers
        if written is not None:
            kv, collections = written
            keys = [("", bytes(write.key, "utf-8")) for write in (*kv.writes, *kv.metadata_writes)]
            for collection, hashed in collections:
                keys += [(collection, bytes(write.key_hash)) for write in hashed.hashed_writes]
                keys += [(collection, bytes(write.key_hash)) for write in hashed.metadata_writes]
            if any((namespace, collection, key) in self.key_level_policies for collection, key in keys):
                self._problem(
                    "transaction", ref, f"{label}: writes keys of {namespace} that carry key-level endorsement policies"
                )
            if kv.writes or kv.metadata_writes:
                policies.setdefault(definition.parameter, f"chaincode {namespace}")
            for collection, hashed in collections:
                if hashed.hashed_writes or hashed.metadata_writes:
                    policy = self._collection_policy(namespace, collection, definition, ref, label, config)
                    if policy is not None:
                        policies.setdefault(policy, f"collection {collection} of {namespace}")
        if not policies:
            policies[definition.parameter] = f"chaincode {namespace}"
        for policy_bytes, covers in policies.items():
            self._check_application_policy(policy_bytes, endorsers, ref, f"{label}: endorsements for {covers}", config)

    def _collection_policy(
        self, namespace: str, collection: str, definition: Definition, ref: str, label: str, config: ChannelConfig
    ) -> bytes | None:
        if collection.startswith(IMPLICIT_COLLECTION_PREFIX):
            msp_id = collection[len(IMPLICIT_COLLECTION_PREFIX) :]
            organisation = config.application_organisations.get(msp_id)
            if organisation is None:
                self._problem("transaction", ref, f"{label}: writes to the implicit collection of an unknown MSP")
                return None
            path = f"/Channel/Application/{organisation}/Endorsement"
            if config.policy(path) is not None:
                return policies_pb2.ApplicationPolicy(channel_config_policy_reference=path).SerializeToString()
            member = policies_pb2.SignaturePolicyEnvelope()
            member.rule.n_out_of.n = 1
            member.rule.n_out_of.rules.add().signed_by = 0
            member.identities.add().principal = _member_role(msp_id)
            return policies_pb2.ApplicationPolicy(signature_policy=member).SerializeToString()
        if collection not in definition.collections:
            self._problem("transaction", ref, f"{label}: writes to collection {collection} that {namespace} lacks")
            return None
        return definition.collections[collection] or definition.parameter

    def _check_application_policy(
        self, policy_bytes: bytes, endorsers: list[Identity], ref: str, what: str, config: ChannelConfig
    ) -> None:
        try:
            policy = policies_pb2.ApplicationPolicy.FromString(policy_bytes)
        except DecodeError:
            self._problem("transaction", ref, f"{what}: the endorsement policy cannot be read")
            return
        kind = policy.WhichOneof("Type")
        if kind == "channel_config_policy_reference":
            self._check_policy_path(config, policy.channel_config_policy_reference, endorsers, "transaction", ref, what)
            return
        if kind != "signature_policy":
            self._problem("transaction", ref, f"{what}: the endorsement policy is of an unknown type")
            return
        try:
            if not config.signature_policy_satisfied(policy.signature_policy, endorsers):
                self._problem(
                    "transaction", ref, f"{what} do not satisfy {describe_signature_policy(policy.signature_policy)}"
                )
        except UnsupportedPolicy as error:
            self._problem("transaction", ref, f"{what} cannot be checked: {error}")

    # --- state the chain itself changes ---------------------------------------------------------
    def _apply(self, namespaces: dict[str, tuple[Any, list[tuple[str, Any]]]]) -> None:
        """Record what a valid transaction changes that later validation depends on."""
        for namespace, (kv, collections) in namespaces.items():
            metadata_writes = [("", bytes(write.key, "utf-8"), write.entries) for write in kv.metadata_writes]
            for collection, hashed in collections:
                metadata_writes += [
                    (collection, bytes(write.key_hash), write.entries) for write in hashed.metadata_writes
                ]
            for collection, key, entries in metadata_writes:
                if any(entry.name == VALIDATION_PARAMETER and entry.value for entry in entries):
                    self.key_level_policies.add((namespace, collection, key))
                else:
                    self.key_level_policies.discard((namespace, collection, key))
            if namespace == LIFECYCLE:
                for write in kv.writes:
                    self._apply_lifecycle_write(write)

    def _apply_lifecycle_write(self, write: Any) -> None:
        if not write.key.startswith(DEFINITION_PREFIX):
            return
        name, _, field_name = write.key[len(DEFINITION_PREFIX) :].rpartition("/")
        if not name or field_name not in ("ValidationInfo", "Collections"):
            return
        if write.is_delete:
            self.definitions.pop(name, None)
            return
        try:
            value = bytes(db_pb2.StateData.FromString(write.value).Bytes)
            definition = self.definitions.setdefault(name, Definition())
            if field_name == "ValidationInfo":
                info = chaincode_definition_pb2.ChaincodeValidationInfo.FromString(value)
                definition.plugin, definition.parameter = info.validation_plugin, bytes(info.validation_parameter)
            else:
                package = collection_pb2.CollectionConfigPackage.FromString(value)
                definition.collections = {
                    config.static_collection_config.name: (
                        config.static_collection_config.endorsement_policy.SerializeToString()
                        if config.static_collection_config.HasField("endorsement_policy")
                        else None
                    )
                    for config in package.config
                }
        except DecodeError:
            self.definitions[name] = Definition(plugin="<unreadable definition>")


def _member_role(msp_id: str) -> bytes:
    return msp_principal_pb2.MSPRole(msp_identifier=msp_id, role=msp_principal_pb2.MSPRole.MEMBER).SerializeToString()


def verify_blocks(blocks: Iterable[Any]) -> ChainVerifier:
    """Verify the blocks of one channel, in order from its genesis block."""
    verifier = ChainVerifier()
    for block in blocks:
        verifier.add(block)
    return verifier


_OUTSIDER, _INVALID = "outsider", "invalid"
_ORDERER_FAULTS = {_OUTSIDER: ": the signer is not an orderer of the channel", _INVALID: " does not verify"}
_ENDORSER_FAULTS = {_INVALID: " does not verify"}


def _signature_fault(signer: Identity, members: Any, message: bytes, signature: bytes) -> str | None:
    """Why `signer`'s signature over `message` does not count for the organisations `members`: _OUTSIDER (not one
    of them), its certificate's fault, or _INVALID (the signature does not verify); None when it counts."""
    if signer.msp_id not in members:
        return _OUTSIDER
    if signer.error:
        return signer.error
    if not verify_signature(signer, message, signature):
        return _INVALID
    return None
