"""Reading Fabric blocks: header hashes, data hashes, and transaction summaries without values.

A block's header hash is SHA-256 over the ASN.1 DER encoding of
SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash } (protoutil.BlockHeaderBytes),
and its data hash is SHA-256 over the concatenated envelope bytes (protoutil.ComputeBlockDataHash).
Block n's previous_hash must equal block n-1's header hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, transaction_pb2

from ledger.client import BlockSummary, BlockTransaction

TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_unsigned_integer(value: int) -> bytes:
    # Minimal two's complement: one leading zero byte when the high bit would read as a sign.
    content = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _der(0x02, content)


def header_bytes(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    return _der(0x30, _der_unsigned_integer(number) + _der(0x04, bytes(previous_hash)) + _der(0x04, bytes(data_hash)))


def header_hash(header: Any) -> bytes:
    """The hash of a common.BlockHeader, as the next block's previous_hash records it."""
    return hashlib.sha256(header_bytes(header.number, header.previous_hash, header.data_hash)).digest()


def data_hash(block: Any) -> bytes:
    return hashlib.sha256(b"".join(block.data.data)).digest()


def validation_code_name(code: int) -> str:
    """ "VALID", "MVCC_READ_CONFLICT", ... for a peer.TxValidationCode value."""
    try:
        return str(transaction_pb2.TxValidationCode.Name(code))
    except ValueError:
        return f"UNKNOWN_VALIDATION_CODE_{code}"


def validation_codes(block: Any) -> bytes:
    metadata = block.metadata.metadata
    return bytes(metadata[TRANSACTIONS_FILTER]) if len(metadata) > TRANSACTIONS_FILTER else b""


def summarise_block(block: Any) -> BlockSummary:
    """The block's hashes and, per transaction, id, status, contract, function and time: never arguments."""
    codes = validation_codes(block)
    transactions = tuple(
        _summarise_envelope(envelope_bytes, codes[index] if index < len(codes) else None)
        for index, envelope_bytes in enumerate(block.data.data)
    )
    return BlockSummary(
        number=block.header.number,
        hash=header_hash(block.header).hex(),
        previous_hash=bytes(block.header.previous_hash).hex(),
        data_hash=bytes(block.header.data_hash).hex(),
        transactions=transactions,
    )


def _summarise_envelope(envelope_bytes: bytes, code: int | None) -> BlockTransaction:
    envelope = common_pb2.Envelope.FromString(envelope_bytes)
    payload = common_pb2.Payload.FromString(envelope.payload)
    channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    contract, function = "", common_pb2.HeaderType.Name(channel_header.type)
    if channel_header.type == ENDORSER_TRANSACTION:
        contract, function = _contract_and_function(payload.data)
    return BlockTransaction(
        tx_id=channel_header.tx_id,
        status="UNKNOWN" if code is None else validation_code_name(code),
        contract=contract,
        function=function,
        timestamp=channel_header.timestamp.ToJsonString(),
    )


def _contract_and_function(transaction_bytes: bytes) -> tuple[str, str]:
    """From the proposal's first argument "contract:Function"; a chaincode without contracts gives its name."""
    transaction = transaction_pb2.Transaction.FromString(transaction_bytes)
    if not transaction.actions:
        return "", ""
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    proposal_payload = proposal_pb2.ChaincodeProposalPayload.FromString(action_payload.chaincode_proposal_payload)
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(proposal_payload.input).chaincode_spec
    if not spec.input.args:
        return spec.chaincode_id.name, ""
    name = bytes(spec.input.args[0]).decode(errors="replace")
    contract, separator, function = name.rpartition(":")
    if not separator:
        return spec.chaincode_id.name, name
    return contract, function
