"""The Fabric backend: a LedgerClient over the Fabric Gateway gRPC API (Fabric v2.4+ peers).

Public API (stable; other code and the real-network tests build on it):

    FabricLedger.from_url("fabric://<gateway host:port>/<channel>/<chaincode name>", environ=os.environ)
        reads the FABRIC_* variables below; this is what open_ledger("fabric://...") calls.
    FabricLedger(endpoint, channel, chaincode, identity=SigningIdentity(...),
                 tls_root_certificates=<PEM bytes> or None (plaintext), tls_server_name=None,
                 deadline_seconds=30.0, submit_retries=3)
    ledger.fabric_identity.SigningIdentity.from_files(msp_id, cert_path, key_path)

Environment (FabricLedger.from_url):
    FABRIC_MSP_ID             the client's MSP id (e.g. HospitalMSP)                          required
    FABRIC_CERT_PATH          PEM certificate of the client (file, or an MSP signcerts/ dir)   required
    FABRIC_KEY_PATH           PEM P-256 private key (file, or an MSP keystore/ dir)            required
    FABRIC_TLS_CA_PATH        PEM root CA of the gateway peer's TLS certificate               required unless
    FABRIC_TLS_DISABLED       "true" to talk plaintext gRPC to the peer (development only)    ... this is true
    FABRIC_TLS_SERVER_NAME    host name to expect in the peer's TLS certificate               optional
    FABRIC_DEADLINE_SECONDS   deadline of every gRPC call (evaluate, endorse, submit, commit)  default 30
    FABRIC_SUBMIT_RETRIES     re-endorsements after an MVCC/phantom conflict or an endorsement
                              mismatch, before TransactionConflict                             default 3

The chaincode is one ContractChaincode, so the function name on the wire is "<contract>:<Function>".
A submit is Endorse -> sign the prepared envelope -> Submit -> CommitStatus (waits for the commit).
Only MVCC_READ_CONFLICT, PHANTOM_READ_CONFLICT and mismatching endorsements are retried, each with a
fresh proposal (new transaction id); a contract's refusal never is. Error messages carry gRPC codes,
transaction ids and the contract's own message only: never arguments (they hold pseudonyms).
The chain is read through the query system chaincode (qscc) on the same channel.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import chaincode_event_pb2, chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.timestamp_pb2 import Timestamp

from ledger import fabric_blocks
from ledger.client import (
    BlockSummary,
    ChaincodeEvent,
    Problem,
    Receipt,
    TransactionLocation,
    VerificationReport,
)
from ledger.errors import ContractRejected, LedgerError, LedgerUnavailable, TransactionConflict, error_from_response
from ledger.fabric_identity import SigningIdentity

DEFAULT_DEADLINE_SECONDS = 30.0
DEFAULT_SUBMIT_RETRIES = 3
QUERY_SYSTEM_CHAINCODE = "qscc"
VALID = "VALID"
RETRYABLE_VALIDATION_CODES = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
ENDORSEMENT_MISMATCH = "ProposalResponsePayloads do not match"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
NO_ENDORSERS = "no combination of peers can be derived which satisfy the endorsement policy"
TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
)
_CHAINCODE_RESPONSE = re.compile(r"chaincode response (\d+), (.*)", re.DOTALL)
_ERROR_DETAIL_TYPE = gateway_pb2.ErrorDetail.DESCRIPTOR.full_name

Response = TypeVar("Response")


class EndorsementMismatch(TransactionConflict):
    """The endorsing peers returned different results (they read different versions): re-endorse."""


@dataclass(frozen=True)
class Proposal:
    """A signed proposal and the ids it was built with."""

    tx_id: str
    channel: str
    signed: Any  # peer.SignedProposal


def build_proposal(
    identity: SigningIdentity, channel: str, chaincode: str, function: str, args: tuple[str, ...] | list[str]
) -> Proposal:
    """A signed ENDORSER_TRANSACTION proposal, built field by field as the Fabric Gateway clients build it."""
    tx_id, nonce = identity.new_transaction_context()
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    channel_header = common_pb2.ChannelHeader(
        type=fabric_blocks.ENDORSER_TRANSACTION,
        timestamp=timestamp,
        channel_id=channel,
        tx_id=tx_id,
        epoch=0,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode)
        ).SerializeToString(),
    )
    signature_header = common_pb2.SignatureHeader(creator=identity.creator, nonce=nonce)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(), signature_header=signature_header.SerializeToString()
    )
    invocation = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
            input=chaincode_pb2.ChaincodeInput(args=[function.encode(), *(arg.encode() for arg in args)]),
        )
    )
    proposal_bytes = proposal_pb2.Proposal(
        header=header.SerializeToString(),
        payload=proposal_pb2.ChaincodeProposalPayload(input=invocation.SerializeToString()).SerializeToString(),
    ).SerializeToString()
    signed = proposal_pb2.SignedProposal(proposal_bytes=proposal_bytes, signature=identity.sign(proposal_bytes))
    return Proposal(tx_id=tx_id, channel=channel, signed=signed)


def parse_prepared_transaction(envelope: Any) -> tuple[bytes, tuple[ChaincodeEvent, ...]]:
    """The chaincode's result payload and event from an endorsed transaction envelope."""
    payload = common_pb2.Payload.FromString(envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    for action in transaction.actions:
        action_payload = transaction_pb2.ChaincodeActionPayload.FromString(action.payload)
        response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
            action_payload.action.proposal_response_payload
        )
        chaincode_action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
        events: tuple[ChaincodeEvent, ...] = ()
        if chaincode_action.events:
            event = chaincode_event_pb2.ChaincodeEvent.FromString(chaincode_action.events)
            if event.event_name:
                events = (ChaincodeEvent(name=event.event_name, payload=bytes(event.payload)),)
        return bytes(chaincode_action.response.payload), events
    raise LedgerError("the endorsed transaction holds no chaincode action")


def _status_class() -> Any:
    """google.rpc.Status, the message in the grpc-status-details-bin trailer, without googleapis-common-protos.

    It is declared in a private pool under a private name: only the wire format matters.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="health_platform/ledger/rpc_status.proto",
        package="health_platform.ledger.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    message = file.message_type.add(name="Status")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    message.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(
        name="details",
        number=3,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("health_platform.ledger.rpc.Status"))


_RpcStatus = _status_class()


def error_details(error: grpc.RpcError) -> list[Any]:
    """The Gateway's ErrorDetail entries (one per peer or orderer that failed) from a gRPC error."""
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    details = []
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY:
            continue
        try:
            status = _RpcStatus.FromString(value)
        except Exception:  # noqa: S112 - a malformed trailer only loses the details
            continue
        for packed in status.details:
            if packed.type_url.rpartition("/")[2] == _ERROR_DETAIL_TYPE:
                detail = gateway_pb2.ErrorDetail()
                packed.Unpack(detail)
                details.append(detail)
    return details


def translate_error(operation: str, error: grpc.RpcError) -> LedgerError:
    """A gRPC error from the Gateway as the ledger error a caller can act on.

    A chaincode's refusal ("chaincode response 500, <code>: <message>" in an ErrorDetail or in the
    status message) becomes ContractRejected, or LedgerUnavailable when the code tells of a storage fault
    under the contract (errors.STORAGE_FAULT_CODES); mismatching endorsements EndorsementMismatch; an
    unreachable or slow peer LedgerUnavailable; anything else LedgerError with the gRPC code.
    """
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    status_message = (error.details() if isinstance(error, grpc.Call) else "") or ""
    messages = [detail.message for detail in error_details(error)] + [status_message]
    for message in messages:
        match = _CHAINCODE_RESPONSE.search(message)
        if match:
            return error_from_response(match.group(2))
    if any(ENDORSEMENT_MISMATCH in message for message in messages):
        return EndorsementMismatch(f"fabric {operation}: the endorsing peers' results do not match")
    if any(NO_ENDORSERS in message for message in messages):
        # The gateway knows no live peers that together satisfy the policy: one is down, or its gossip has not
        # found it again yet after a restart. Transient, whatever the gRPC code (FAILED_PRECONDITION).
        return LedgerUnavailable(f"fabric {operation} failed: too few endorsing peers are reachable")
    code_name = code.name if code is not None else "UNKNOWN"
    if code in TRANSIENT_CODES:
        return LedgerUnavailable(f"fabric {operation} failed: {code_name}")
    return LedgerError(f"fabric {operation} failed: {code_name}: {status_message[:200]}")


class FabricLedger:
    """LedgerClient over one Fabric Gateway peer. Thread-safe: one gRPC channel, shared by all threads."""

    def __init__(
        self,
        endpoint: str,
        channel: str,
        chaincode: str,
        *,
        identity: SigningIdentity,
        tls_root_certificates: bytes | None,
        tls_server_name: str | None = None,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        submit_retries: int = DEFAULT_SUBMIT_RETRIES,
    ):
        if deadline_seconds <= 0:
            raise ValueError("deadline_seconds must be positive")
        if submit_retries < 0:
            raise ValueError("submit_retries must not be negative")
        self.endpoint = endpoint
        self.channel = channel
        self.chaincode = chaincode
        self.identity = identity
        self.deadline_seconds = deadline_seconds
        self.submit_retries = submit_retries
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", 100 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 60_000),
        ]
        if tls_root_certificates is None:
            self._channel = grpc.insecure_channel(endpoint, options=options)
        else:
            if tls_server_name:
                options += [
                    ("grpc.ssl_target_name_override", tls_server_name),
                    ("grpc.default_authority", tls_server_name),
                ]
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_certificates)
            self._channel = grpc.secure_channel(endpoint, credentials, options=options)
        self._gateway = gateway_pb2_grpc.GatewayStub(self._channel)
        self._closed = threading.Event()

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> FabricLedger:
        """Build from LEDGER_URL=fabric://host:port/channel/chaincode and the FABRIC_* variables."""
        env = os.environ if environ is None else environ
        endpoint, channel, chaincode = parse_url(url)

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ValueError(f"{name} must be set for LEDGER_URL={url}")
            return value

        identity = SigningIdentity.from_files(
            required("FABRIC_MSP_ID"), required("FABRIC_CERT_PATH"), required("FABRIC_KEY_PATH")
        )
        tls_disabled = _flag(env, "FABRIC_TLS_DISABLED")
        tls_root_certificates = None if tls_disabled else _read(required("FABRIC_TLS_CA_PATH"), "FABRIC_TLS_CA_PATH")
        return cls(
            endpoint,
            channel,
            chaincode,
            identity=identity,
            tls_root_certificates=tls_root_certificates,
            tls_server_name=env.get("FABRIC_TLS_SERVER_NAME", "").strip() or None,
            deadline_seconds=_number(env, "FABRIC_DEADLINE_SECONDS", DEFAULT_DEADLINE_SECONDS, float),
            submit_retries=_number(env, "FABRIC_SUBMIT_RETRIES", DEFAULT_SUBMIT_RETRIES, int),
        )

    # --- LedgerClient -------------------------------------------------------------------------
    def submit(self, contract: str, function: str, *args: str) -> Receipt:
        name = _function_name(contract, function, args)
        for attempt in range(self.submit_retries + 1):
            if attempt:
                time.sleep(random.uniform(0, 0.02 * attempt))
            proposal = build_proposal(self.identity, self.channel, self.chaincode, name, args)
            try:
                endorsed = self._call(
                    "endorse",
                    self._gateway.Endorse,
                    gateway_pb2.EndorseRequest(
                        transaction_id=proposal.tx_id, channel_id=self.channel, proposed_transaction=proposal.signed
                    ),
                )
            except EndorsementMismatch:
                continue
            envelope = endorsed.prepared_transaction
            envelope.signature = self.identity.sign(envelope.payload)
            result, events = parse_prepared_transaction(envelope)
            self._call(
                "submit",
                self._gateway.Submit,
                gateway_pb2.SubmitRequest(
                    transaction_id=proposal.tx_id, channel_id=self.channel, prepared_transaction=envelope
                ),
            )
            status = self._commit_status(proposal.tx_id)
            code = fabric_blocks.validation_code_name(status.result)
            if code == VALID:
                return Receipt(
                    tx_id=proposal.tx_id, block_number=status.block_number, status=VALID, payload=result, events=events
                )
            if code not in RETRYABLE_VALIDATION_CODES:
                raise LedgerError(f"transaction {proposal.tx_id} ({contract}:{function}) was invalidated: {code}")
        raise TransactionConflict(f"{contract}:{function} conflicted {self.submit_retries + 1} times")

    def evaluate(self, contract: str, function: str, *args: str) -> Receipt:
        return self._evaluate(self.chaincode, _function_name(contract, function, args), args)

    def locate(self, tx_id: str) -> TransactionLocation | None:
        try:
            processed = transaction_pb2.ProcessedTransaction.FromString(self._query("GetTransactionByID", tx_id))
        except ContractRejected as error:
            if "no such transaction" in error.message or "not found" in error.message.lower():
                return None
            raise
        block = common_pb2.Block.FromString(self._query("GetBlockByTxID", tx_id))
        return TransactionLocation(
            tx_id=tx_id,
            block_number=block.header.number,
            status=fabric_blocks.validation_code_name(processed.validationCode),
        )

    def height(self) -> int:
        return int(self._chain_info().height)

    def block_summary(self, number: int) -> BlockSummary | None:
        if number < 0 or number >= self.height():
            return None
        return fabric_blocks.summarise_block(self._block(number))

    def verify(self) -> VerificationReport:
        """Re-check every block: its data hash, its number, and the header hash chain to the chain's tip."""
        info = self._chain_info()
        problems: list[Problem] = []
        transactions = 0
        previous_header_hash: bytes | None = None
        for number in range(info.height):
            block = self._block(number)
            transactions += len(block.data.data)
            ref = str(number)
            if block.header.number != number:
                problems.append(Problem("block", ref, f"block carries number {block.header.number}"))
            if fabric_blocks.data_hash(block) != bytes(block.header.data_hash):
                problems.append(Problem("block", ref, "data_hash does not match the block's transactions"))
            if previous_header_hash is not None and bytes(block.header.previous_hash) != previous_header_hash:
                problems.append(Problem("block", ref, "previous_hash does not match the previous block's header hash"))
            previous_header_hash = fabric_blocks.header_hash(block.header)
        if previous_header_hash is not None and previous_header_hash != bytes(info.currentBlockHash):
            problems.append(
                Problem("block", str(info.height - 1), "the last block's header hash is not the chain's current hash")
            )
        return VerificationReport(height=int(info.height), transactions=transactions, problems=tuple(problems))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._channel.close()

    # --- internals --------------------------------------------------------------------------
    def _evaluate(self, chaincode: str, name: str, args: tuple[str, ...]) -> Receipt:
        proposal = build_proposal(self.identity, self.channel, chaincode, name, args)
        response = self._call(
            "evaluate",
            self._gateway.Evaluate,
            gateway_pb2.EvaluateRequest(
                transaction_id=proposal.tx_id, channel_id=self.channel, proposed_transaction=proposal.signed
            ),
        )
        result = response.result
        if result.status >= 400:
            raise error_from_response(result.message)
        return Receipt(tx_id=proposal.tx_id, block_number=None, status="EVALUATED", payload=bytes(result.payload))

    def _query(self, function: str, *args: str) -> bytes:
        return self._evaluate(QUERY_SYSTEM_CHAINCODE, function, (self.channel, *args)).payload

    def _chain_info(self) -> Any:
        return ledger_pb2.BlockchainInfo.FromString(self._query("GetChainInfo"))

    def _block(self, number: int) -> Any:
        return common_pb2.Block.FromString(self._query("GetBlockByNumber", str(number)))

    def _commit_status(self, tx_id: str) -> Any:
        request = gateway_pb2.CommitStatusRequest(
            transaction_id=tx_id, channel_id=self.channel, identity=self.identity.creator
        ).SerializeToString()
        return self._call(
            "commit status",
            self._gateway.CommitStatus,
            gateway_pb2.SignedCommitStatusRequest(request=request, signature=self.identity.sign(request)),
        )

    def _call(self, operation: str, method: Callable[..., Response], request: Any) -> Response:
        if self._closed.is_set():
            raise LedgerUnavailable("the fabric ledger client is closed")
        try:
            return method(request, timeout=self.deadline_seconds)
        except grpc.RpcError as error:
            raise translate_error(operation, error) from None
        except ValueError as error:  # grpc raises ValueError on a closed channel
            raise LedgerUnavailable(f"fabric {operation} failed: {type(error).__name__}") from None


def parse_url(url: str) -> tuple[str, str, str]:
    """("host:port", channel, chaincode) from fabric://host:port[,host:port...]/channel/chaincode.

    The gateway list is in order of preference; every entry must be a host:port, and the first is used.
    """
    parts = urlsplit(url)
    path = [segment for segment in parts.path.split("/") if segment]
    if parts.scheme != "fabric" or not parts.netloc or len(path) != 2 or parts.query or parts.fragment:
        raise ValueError("LEDGER_URL must look like fabric://<gateway host:port>/<channel>/<chaincode name>")
    endpoints = parts.netloc.split(",")
    for endpoint in endpoints:
        gateway = urlsplit(f"//{endpoint}")
        try:
            port = gateway.port
        except ValueError:
            port = None
        if not gateway.hostname or port is None:
            raise ValueError(
                "LEDGER_URL must name each gateway's host and port: fabric://<host:port>[,<host:port>...]/<channel>/"
                "<chaincode name>"
            )
    return endpoints[0], path[0], path[1]


def _function_name(contract: str, function: str, args: tuple[str, ...]) -> str:
    if not contract or not function:
        raise ValueError("contract and function must not be empty")
    if not all(isinstance(arg, str) for arg in args):
        raise TypeError("ledger arguments must be strings")
    return f"{contract}:{function}"


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be true or false")


def _number(env: Mapping[str, str], name: str, default: Any, kind: Callable[[str], Any]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{name}={path} cannot be read: {error.strerror}") from None
