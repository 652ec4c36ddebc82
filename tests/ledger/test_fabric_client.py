"""The Fabric Gateway client, against a real gRPC server on 127.0.0.1 that plays the Gateway peer.

The stand-in checks what a peer checks of the client (signatures, transaction ids, message
structure) and answers as Fabric's Gateway does (its status codes and ErrorDetail messages, as in
fabric/internal/pkg/gateway). The real-network tests are in tests/fabric/.
"""

import collections
import hashlib
import threading
import time
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf import any_pb2

from ledger import ContractRejected, LedgerError, LedgerUnavailable, TransactionConflict, open_ledger
from ledger.fabric import FabricLedger, build_proposal, parse_url
from ledger.fabric_blocks import header_bytes, header_hash
from ledger.fabric_identity import P256_ORDER, SigningIdentity, to_low_s, transaction_id
from tests.certificates import certificate, key_pem, pem
from tests.fabric import blocks as fabric_blocks

CHANNEL = "health"
CHAINCODE = "health_platform"
SECRET = "5ec12e7-pseudonym-" + "b" * 46  # an argument value that must never reach a message or a log
VALIDATION = transaction_pb2.TxValidationCode
MVCC = VALIDATION.Value("MVCC_READ_CONFLICT")
PHANTOM = VALIDATION.Value("PHANTOM_READ_CONFLICT")
VALID = VALIDATION.Value("VALID")
MISMATCH = (
    grpc.StatusCode.ABORTED,
    "failed to collect enough transaction endorsements, see attached details for more info",
    ["ProposalResponsePayloads do not match"],
)
NO_ENDORSERS_MESSAGE = (
    "no combination of peers can be derived which satisfy the endorsement policy: "
    "no peer combination can satisfy the endorsement policy"
)


# --- key material -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def channel() -> dict:
    """The channel's organisations (tests/fabric/blocks.py) and the peers that endorse for the stand-in Gateway."""
    ordering, hospital, research = (
        fabric_blocks.Organisation("OrdererMSP"),
        fabric_blocks.Organisation("HospitalMSP"),
        fabric_blocks.Organisation("ResearchMSP"),
    )
    return {
        "ordering": ordering,
        "hospital": hospital,
        "research": research,
        "orderer": ordering.member("orderer"),
        "peers": (hospital.member("peer"), research.member("peer")),
    }


@pytest.fixture(scope="module")
def identity(client_key, channel) -> SigningIdentity:
    hospital = channel["hospital"]
    cert = certificate("clinician-app", client_key, issuer=hospital.ca, issuer_key=hospital.ca_key, unit="client")
    return SigningIdentity("HospitalMSP", pem(cert), client_key)


def verify(identity: SigningIdentity, signature: bytes, message: bytes) -> None:
    public_key = x509.load_pem_x509_certificate(identity.certificate_pem).public_key()
    public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(signature)[1] <= P256_ORDER // 2, "high-S signature: Fabric rejects it"


# --- a stand-in for the Gateway peer ----------------------------------------------------------
class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def rpc_status_bytes(code: grpc.StatusCode, message: str, details: list[str]) -> bytes:
    """google.rpc.Status on the wire, with one gateway.ErrorDetail per message, as the Gateway sends it."""
    wire = fabric_blocks
    encoded = wire.varint(1 << 3) + wire.varint(code.value[0]) + wire.length_delimited(2, message.encode())
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(gateway_pb2.ErrorDetail(address="peer0.hospital:7051", msp_id="HospitalMSP", message=detail))
        encoded += fabric_blocks.length_delimited(3, packed.SerializeToString())
    return encoded


def abort(context, code: grpc.StatusCode, message: str, details: list[str] = ()) -> None:
    trailer = (("grpc-status-details-bin", rpc_status_bytes(code, message, list(details))),)
    context.abort_with_status(_Status(code, message, trailer))


def unpack_proposal(signed) -> dict:
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    invocation = chaincode_pb2.ChaincodeInvocationSpec.FromString(
        proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload).input
    )
    return {
        "proposal": proposal,
        "header": header,
        "channel_header": channel_header,
        "signature_header": signature_header,
        "chaincode": invocation.chaincode_spec.chaincode_id.name,
        "args": [bytes(arg).decode() for arg in invocation.chaincode_spec.input.args],
    }


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Answers like a Gateway peer, from a script; records every request it receives."""

    def __init__(self, identity: SigningIdentity, endorsers: list[SigningIdentity]):
        self.identity = identity
        self.endorsers = endorsers
        self.requests: list[tuple[str, object]] = []
        self.endorse_failures: list[tuple[grpc.StatusCode, str, list[str]]] = []
        self.commit_codes: list[int] = []
        self.evaluate_failure: tuple[grpc.StatusCode, str, list[str]] | None = None
        self.submit_failure: tuple[grpc.StatusCode, str, list[str]] | None = None
        self.hang = threading.Event()
        self.blocks: list[common_pb2.Block] = []
        self.tx_codes: dict[str, int] = {}
        self.result = b'{"ok":true}'
        self.event: tuple[str, bytes] | None = None

    def _check_proposal(self, request, context) -> dict:
        parts = unpack_proposal(request.proposed_transaction)
        verify(self.identity, request.proposed_transaction.signature, request.proposed_transaction.proposal_bytes)
        assert parts["channel_header"].tx_id == request.transaction_id
        assert request.channel_id == parts["channel_header"].channel_id == CHANNEL
        return parts

    def Evaluate(self, request, context):
        self.requests.append(("Evaluate", request))
        if self.hang.is_set():
            while context.is_active():
                time.sleep(0.02)
            return gateway_pb2.EvaluateResponse()
        parts = self._check_proposal(request, context)
        if parts["chaincode"] == "qscc":
            return self._qscc(parts["args"], context)
        if self.evaluate_failure:
            abort(context, *self.evaluate_failure)
        return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=self.result))

    def Endorse(self, request, context):
        self.requests.append(("Endorse", request))
        self._check_proposal(request, context)
        if self.endorse_failures:
            abort(context, *self.endorse_failures.pop(0))
        signed = request.proposed_transaction
        envelope = fabric_blocks.endorsed_envelope(signed, self.endorsers, payload=self.result, event=self.event)
        return gateway_pb2.EndorseResponse(prepared_transaction=envelope)

    def Submit(self, request, context):
        self.requests.append(("Submit", request))
        verify(self.identity, request.prepared_transaction.signature, request.prepared_transaction.payload)
        if self.submit_failure:
            abort(context, *self.submit_failure)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):
        self.requests.append(("CommitStatus", request))
        verify(self.identity, request.signature, request.request)
        inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        assert inner.identity == self.identity.creator
        code = self.commit_codes.pop(0) if self.commit_codes else VALID
        return gateway_pb2.CommitStatusResponse(result=code, block_number=7)

    def _qscc(self, args: list[str], context):
        function, channel, *rest = args
        assert channel == CHANNEL

        def answer(message) -> gateway_pb2.EvaluateResponse:
            return gateway_pb2.EvaluateResponse(
                result=proposal_response_pb2.Response(status=200, payload=message.SerializeToString())
            )

        if function == "GetChainInfo":
            current = header_hash(self.blocks[-1].header)
            return answer(ledger_pb2.BlockchainInfo(height=len(self.blocks), currentBlockHash=current))
        if function == "GetBlockByNumber":
            return answer(self.blocks[int(rest[0])])
        if function in ("GetTransactionByID", "GetBlockByTxID"):
            for block in self.blocks:
                for envelope_bytes in block.data.data:
                    envelope = common_pb2.Envelope.FromString(envelope_bytes)
                    payload = common_pb2.Payload.FromString(envelope.payload)
                    if common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id == rest[0]:
                        if function == "GetBlockByTxID":
                            return answer(block)
                        return answer(
                            transaction_pb2.ProcessedTransaction(
                                transactionEnvelope=envelope, validationCode=self.tx_codes[rest[0]]
                            )
                        )
            message = (
                f"chaincode response 500, Failed to get transaction with id {rest[0]}, "
                f"error no such transaction ID [{rest[0]}] in index"
            )
            abort(context, grpc.StatusCode.UNKNOWN, "evaluate call to endorser returned error: " + message, [message])
        raise AssertionError(f"unexpected qscc function {function}")

    def calls(self) -> list[str]:
        return [name for name, _ in self.requests]


def start_server(servicer, credentials=None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


@pytest.fixture
def gateway(identity, channel):
    servicer = FakeGateway(identity, list(channel["peers"]))
    server, port = start_server(servicer)
    servicer.endpoint = f"127.0.0.1:{port}"
    yield servicer
    servicer.hang.clear()
    server.stop(0)


@pytest.fixture
def client(gateway, identity):
    ledger = FabricLedger(
        gateway.endpoint,
        CHANNEL,
        CHAINCODE,
        identity=identity,
        tls_root_certificates=None,
        deadline_seconds=5,
        submit_retries=3,
    )
    yield ledger
    ledger.close()


# --- identity, signatures and transaction ids -------------------------------------------------
def test_signatures_are_low_s_and_verify_with_the_certificate(identity, client_key):
    raw_high_s = 0
    for index in range(200):
        message = f"proposal {index}".encode()
        raw = client_key.sign(message, ec.ECDSA(hashes.SHA256()))
        raw_high_s += decode_dss_signature(raw)[1] > P256_ORDER // 2
        verify(identity, identity.sign(message), message)
    # Half of plain ECDSA signatures have a high s: normalising is what makes them all acceptable.
    assert raw_high_s > 50


def test_low_s_normalisation_keeps_a_valid_signature(client_key):
    message = b"envelope payload"
    while True:
        raw = client_key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(raw)
        if s > P256_ORDER // 2:
            break
    normalised = to_low_s(raw)
    assert decode_dss_signature(normalised) == (r, P256_ORDER - s)
    client_key.public_key().verify(normalised, message, ec.ECDSA(hashes.SHA256()))
    assert to_low_s(normalised) == normalised


def test_transaction_id_is_sha256_of_nonce_then_creator(identity):
    assert transaction_id(b"\x01\x02", b"creator") == hashlib.sha256(b"\x01\x02creator").hexdigest()
    proposal = build_proposal(identity, CHANNEL, CHAINCODE, "anchors:ReadAnchor", ["rec-1"])
    parts = unpack_proposal(proposal.signed)
    nonce, creator = parts["signature_header"].nonce, parts["signature_header"].creator
    assert len(nonce) == 24
    assert proposal.tx_id == parts["channel_header"].tx_id == hashlib.sha256(nonce + creator).hexdigest()
    assert build_proposal(identity, CHANNEL, CHAINCODE, "anchors:ReadAnchor", ["rec-1"]).tx_id != proposal.tx_id


def test_proposal_carries_channel_chaincode_creator_and_contract_function(identity):
    proposal = build_proposal(identity, CHANNEL, CHAINCODE, "consent:GrantConsent", ['{"consent_id":"c-1"}'])
    parts = unpack_proposal(proposal.signed)
    channel_header = parts["channel_header"]
    assert channel_header.type == common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
    assert channel_header.channel_id == CHANNEL
    assert channel_header.epoch == 0
    assert abs(channel_header.timestamp.seconds - time.time()) < 60
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
    assert extension.chaincode_id.name == CHAINCODE
    creator = identities_pb2.SerializedIdentity.FromString(parts["signature_header"].creator)
    assert creator.mspid == "HospitalMSP"
    assert creator.id_bytes == identity.certificate_pem
    assert parts["chaincode"] == CHAINCODE
    assert parts["args"] == ["consent:GrantConsent", '{"consent_id":"c-1"}']
    verify(identity, proposal.signed.signature, proposal.signed.proposal_bytes)


def test_identity_rejects_a_key_that_is_not_the_certificates(identity):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="does not belong"):
        SigningIdentity("HospitalMSP", identity.certificate_pem, other)


# --- submit and evaluate ----------------------------------------------------------------------
def test_submit_endorses_signs_submits_and_waits_for_the_commit(client, gateway, identity):
    gateway.event = ("AccessLogged", b'{"count":1}')
    receipt = client.submit("accesslog", "AppendAccessEvents", SECRET)

    assert gateway.calls() == ["Endorse", "Submit", "CommitStatus"]
    endorse, submit, commit = (request for _, request in gateway.requests)
    assert receipt.tx_id == endorse.transaction_id == submit.transaction_id
    assert receipt.block_number == 7
    assert receipt.status == "VALID"
    assert receipt.payload == b'{"ok":true}'
    assert [(event.name, event.payload) for event in receipt.events] == [("AccessLogged", b'{"count":1}')]
    assert unpack_proposal(endorse.proposed_transaction)["args"] == ["accesslog:AppendAccessEvents", SECRET]
    # The prepared transaction is submitted as endorsed, with the client's signature over its payload.
    verify(identity, submit.prepared_transaction.signature, submit.prepared_transaction.payload)
    inner = gateway_pb2.CommitStatusRequest.FromString(commit.request)
    assert (inner.transaction_id, inner.channel_id) == (receipt.tx_id, CHANNEL)


def test_evaluate_returns_the_result_and_orders_nothing(client, gateway):
    receipt = client.evaluate("anchors", "ReadAnchor", "rec-1")
    assert gateway.calls() == ["Evaluate"]
    assert receipt.status == "EVALUATED"
    assert receipt.block_number is None
    assert receipt.json() == {"ok": True}


def test_a_contract_error_at_endorsement_is_contract_rejected_and_never_retried(client, gateway):
    gateway.endorse_failures = [
        (
            grpc.StatusCode.ABORTED,
            "failed to endorse transaction, see attached details for more info",
            ["chaincode response 500, not_found: no anchor for this record"],
        )
    ]
    with pytest.raises(ContractRejected) as raised:
        client.submit("anchors", "AnchorRecord", SECRET)
    assert (raised.value.code, raised.value.message) == ("not_found", "no anchor for this record")
    assert gateway.calls() == ["Endorse"]


def test_a_refusal_by_another_organisation_only_is_a_disagreement_endorsed_again(client, gateway):
    """The gateway's own peer endorsed; the other organisation's peer, one block behind, did not yet know the key
    the first had just committed. Asked again, both agree."""
    gateway.endorse_failures = [
        (
            grpc.StatusCode.ABORTED,
            MISMATCH[1],
            ["chaincode response 500, unknown_key: the signing passkey is not one of the patient's keys"],
        )
    ]
    receipt = client.submit("consent", "GrantConsent", SECRET)
    assert receipt.status == "VALID"
    assert gateway.calls() == ["Endorse", "Endorse", "Submit", "CommitStatus"]


def test_a_refusal_by_another_organisation_that_lasts_fails_closed(client, gateway):
    refusal = (grpc.StatusCode.ABORTED, MISMATCH[1], ["chaincode response 500, not_found: no anchor for this record"])
    gateway.endorse_failures = [refusal] * 4
    with pytest.raises(TransactionConflict) as raised:
        client.evaluate_endorsed("consent", "CheckAccessBatch", SECRET)
    assert not isinstance(raised.value, ContractRejected)
    assert SECRET not in str(raised.value)


def test_a_contract_error_at_evaluation_is_contract_rejected(client, gateway):
    detail = "chaincode response 500, invalid_argument: sha256 must be 64 hex digits"
    gateway.evaluate_failure = (
        grpc.StatusCode.UNKNOWN,
        "evaluate call to endorser returned error: " + detail,
        [detail],
    )
    with pytest.raises(ContractRejected) as raised:
        client.evaluate("anchors", "ReadAnchor", SECRET)
    assert raised.value.code == "invalid_argument"
    assert raised.value.message == "sha256 must be 64 hex digits"


def test_a_contract_error_without_details_is_read_from_the_status_message(client, gateway):
    gateway.evaluate_failure = (
        grpc.StatusCode.UNKNOWN,
        "evaluate call to endorser returned error: chaincode response 500, not_found: no such consent",
        [],
    )
    with pytest.raises(ContractRejected) as raised:
        client.evaluate("consent", "ReadConsent", "c-1")
    assert raised.value.code == "not_found"


@pytest.mark.parametrize("code", [MVCC, PHANTOM])
def test_a_read_conflict_is_retried_with_a_new_transaction(client, gateway, code):
    gateway.commit_codes = [code, VALID]
    receipt = client.submit("consent", "RevokeConsent", "c-1")
    assert gateway.calls() == ["Endorse", "Submit", "CommitStatus"] * 2
    endorsed = [request.transaction_id for name, request in gateway.requests if name == "Endorse"]
    assert endorsed[0] != endorsed[1]
    assert receipt.tx_id == endorsed[1]


def test_mismatching_endorsements_are_endorsed_again(client, gateway):
    gateway.endorse_failures = [MISMATCH]
    receipt = client.submit("consent", "RevokeConsent", "c-1")
    assert gateway.calls() == ["Endorse", "Endorse", "Submit", "CommitStatus"]
    assert receipt.status == "VALID"


def test_conflicts_past_the_retry_limit_raise_transaction_conflict(client, gateway):
    gateway.commit_codes = [MVCC] * 10
    with pytest.raises(TransactionConflict) as raised:
        client.submit("accesslog", "AppendAccessEvents", SECRET)
    assert gateway.calls().count("Endorse") == client.submit_retries + 1 == 4
    assert SECRET not in str(raised.value)


def test_other_invalidations_are_not_retried(client, gateway):
    gateway.commit_codes = [VALIDATION.Value("ENDORSEMENT_POLICY_FAILURE")]
    with pytest.raises(LedgerError, match="ENDORSEMENT_POLICY_FAILURE") as raised:
        client.submit("anchors", "AnchorRecord", SECRET)
    assert not isinstance(raised.value, TransactionConflict)
    assert gateway.calls() == ["Endorse", "Submit", "CommitStatus"]


def test_an_orderer_failure_is_ledger_unavailable(client, gateway):
    gateway.submit_failure = (
        grpc.StatusCode.UNAVAILABLE,
        "no orderers could successfully process transaction",
        ["EOF"],
    )
    with pytest.raises(LedgerUnavailable):
        client.submit("anchors", "AnchorRecord", SECRET)


def test_a_gateway_that_knows_too_few_live_endorsers_is_ledger_unavailable(client, gateway):
    """What the hospital's gateway answers while the research peer is down, or before gossip has found it again
    after a restart: FAILED_PRECONDITION, yet transient."""
    gateway.endorse_failures = [(grpc.StatusCode.FAILED_PRECONDITION, NO_ENDORSERS_MESSAGE, [])]
    with pytest.raises(LedgerUnavailable):
        client.submit("anchors", "AnchorRecord", SECRET)


def test_a_refused_request_is_a_ledger_error_naming_the_grpc_code(client, gateway):
    gateway.evaluate_failure = (grpc.StatusCode.PERMISSION_DENIED, "access denied", [])
    with pytest.raises(LedgerError, match="PERMISSION_DENIED") as raised:
        client.evaluate("anchors", "ReadAnchor", SECRET)
    assert not isinstance(raised.value, (ContractRejected, LedgerUnavailable))


def test_error_messages_and_logs_never_carry_arguments(client, gateway, caplog):
    caplog.set_level("DEBUG")
    failures = []
    gateway.commit_codes = [MVCC] * 10
    gateway.endorse_failures = [(grpc.StatusCode.ABORTED, "failed to assemble transaction", [])]
    for call in (
        lambda: client.submit("anchors", "AnchorRecord", SECRET),  # aborted -> unavailable
        lambda: client.submit("anchors", "AnchorRecord", SECRET),  # conflicts -> TransactionConflict
    ):
        with pytest.raises(LedgerError) as raised:
            call()
        failures.append(raised.value)
    assert isinstance(failures[0], LedgerUnavailable)
    assert isinstance(failures[1], TransactionConflict)
    for failure in failures:
        assert SECRET not in str(failure)
        assert SECRET not in repr(failure.args)
    assert SECRET not in caplog.text


# --- reachability, deadlines and TLS ----------------------------------------------------------
def test_an_unreachable_gateway_is_ledger_unavailable(identity):
    with socket_port() as port:
        pass  # the port is free again: nothing listens there
    ledger = FabricLedger(
        f"127.0.0.1:{port}", CHANNEL, CHAINCODE, identity=identity, tls_root_certificates=None, deadline_seconds=2
    )
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable):
        ledger.evaluate("anchors", "ReadAnchor", "rec-1")
    assert time.monotonic() - started < 3
    ledger.close()


def test_a_gateway_that_never_answers_is_ledger_unavailable_within_the_deadline(gateway, identity):
    gateway.hang.set()
    ledger = FabricLedger(
        gateway.endpoint, CHANNEL, CHAINCODE, identity=identity, tls_root_certificates=None, deadline_seconds=0.5
    )
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match="DEADLINE_EXCEEDED"):
        ledger.evaluate("anchors", "ReadAnchor", "rec-1")
    assert 0.4 < time.monotonic() - started < 2.0
    ledger.close()


def test_a_closed_client_is_unavailable(client):
    client.close()
    with pytest.raises(LedgerUnavailable):
        client.evaluate("anchors", "ReadAnchor", "rec-1")


class socket_port:  # noqa: N801 - used as a context manager
    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._socket.close()


@pytest.fixture(scope="module")
def tls_material():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Hospital TLS CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(
        "peer0.hospital.example", server_key, issuer=ca, issuer_key=ca_key, dns="peer0.hospital.example"
    )
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "ca": pem(ca),
        "other_ca": pem(certificate("Someone else's CA", other_ca_key, ca=True)),
        "server_cert": pem(server),
        "server_key": key_pem(server_key),
    }


@pytest.fixture
def tls_gateway(identity, channel, tls_material):
    servicer = FakeGateway(identity, list(channel["peers"]))
    credentials = grpc.ssl_server_credentials([(tls_material["server_key"], tls_material["server_cert"])])
    server, port = start_server(servicer, credentials)
    servicer.endpoint = f"127.0.0.1:{port}"
    yield servicer
    server.stop(0)


def test_tls_with_the_peers_ca_and_server_name_works(tls_gateway, identity, tls_material):
    ledger = FabricLedger(
        tls_gateway.endpoint,
        CHANNEL,
        CHAINCODE,
        identity=identity,
        tls_root_certificates=tls_material["ca"],
        tls_server_name="peer0.hospital.example",
        deadline_seconds=5,
    )
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"ok": True}
    ledger.close()


@pytest.mark.parametrize(
    ("root", "server_name"),
    [("other_ca", "peer0.hospital.example"), ("ca", "peer1.elsewhere.example"), (None, None)],
    ids=["untrusted-ca", "wrong-server-name", "plaintext"],
)
def test_tls_refuses_an_untrusted_peer_or_plaintext(tls_gateway, identity, tls_material, root, server_name):
    ledger = FabricLedger(
        tls_gateway.endpoint,
        CHANNEL,
        CHAINCODE,
        identity=identity,
        tls_root_certificates=tls_material[root] if root else None,
        tls_server_name=server_name,
        deadline_seconds=2,
    )
    with pytest.raises(LedgerUnavailable):
        ledger.evaluate("anchors", "ReadAnchor", "rec-1")
    assert tls_gateway.requests == []
    ledger.close()


# --- reading the chain through qscc -------------------------------------------------------------
@pytest.fixture
def chain(gateway, identity, channel):
    """Four blocks: the genesis configuration, the chaincode's definition, then two blocks of transactions,
    endorsed by both organisations' peers and signed by the orderer as on a real network."""
    peers, orderer = list(channel["peers"]), [channel["orderer"]]
    organisations = [channel["hospital"], channel["research"]]
    configuration = fabric_blocks.config_envelope(fabric_blocks.channel_config([channel["ordering"]], organisations))
    genesis = fabric_blocks.signed_block(0, None, [configuration], [VALID], [])
    both = fabric_blocks.signature_policy("AND", ("HospitalMSP", "peer"), ("ResearchMSP", "peer"))
    definition = build_proposal(identity, CHANNEL, "_lifecycle", "CommitChaincodeDefinition", [])
    commit = fabric_blocks.endorsed_envelope(
        definition.signed, peers, rwsets=[fabric_blocks.lifecycle_definition_writes(CHAINCODE, both)], creator=identity
    )
    lifecycle = fabric_blocks.signed_block(1, genesis, [commit.SerializeToString()], [VALID], orderer)
    proposals = [
        build_proposal(identity, CHANNEL, CHAINCODE, "anchors:AnchorRecord", ["rec-1", SECRET, "ab" * 32, "1"]),
        build_proposal(identity, CHANNEL, CHAINCODE, "consent:GrantConsent", [SECRET]),
        build_proposal(identity, CHANNEL, CHAINCODE, "accesslog:AppendAccessEvents", [SECRET]),
    ]
    writes = [fabric_blocks.kv_writes(CHAINCODE, {"key": b"{}"})]
    envelopes = [
        fabric_blocks.endorsed_envelope(p.signed, peers, rwsets=writes, creator=identity).SerializeToString()
        for p in proposals
    ]
    first = fabric_blocks.signed_block(2, lifecycle, envelopes[:2], [VALID, MVCC], orderer)
    second = fabric_blocks.signed_block(3, first, envelopes[2:], [VALID], orderer)
    gateway.blocks = [genesis, lifecycle, first, second]
    gateway.tx_codes = {proposals[0].tx_id: VALID, proposals[1].tx_id: MVCC, proposals[2].tx_id: VALID}
    return [p.tx_id for p in proposals]


def test_header_hash_is_sha256_of_the_der_header():
    previous, data = b"\x01" * 32, b"\x02" * 32
    expected = bytes.fromhex("3047020101" + "0420" + "01" * 32 + "0420" + "02" * 32)
    assert header_bytes(1, previous, data) == expected
    assert header_bytes(0, b"", data)[:7] == bytes.fromhex("3027020100" + "0400")
    assert header_bytes(128, b"", b"") == bytes.fromhex("30080202008004000400")
    assert header_bytes(2**40, b"", b"") == bytes.fromhex("300c020601000000000004000400")
    header = common_pb2.BlockHeader(number=1, previous_hash=previous, data_hash=data)
    assert header_hash(header) == hashlib.sha256(expected).digest()


def test_height_and_block_summary(client, chain):
    assert client.height() == 4
    summary = client.block_summary(2)
    assert summary.number == 2
    assert summary.previous_hash == header_hash(client._block(1).header).hex()
    assert summary.hash == header_hash(client._block(2).header).hex()
    assert summary.data_hash == client._block(2).header.data_hash.hex()
    assert [(t.tx_id, t.status, t.contract, t.function) for t in summary.transactions] == [
        (chain[0], "VALID", "anchors", "AnchorRecord"),
        (chain[1], "MVCC_READ_CONFLICT", "consent", "GrantConsent"),
    ]
    assert all(t.timestamp.endswith("Z") for t in summary.transactions)
    assert SECRET not in repr(summary)
    genesis = client.block_summary(0)
    assert [(t.contract, t.function) for t in genesis.transactions] == [("", "CONFIG")]
    assert client.block_summary(4) is None
    assert client.block_summary(-1) is None


def test_locate_finds_block_and_validation_status(client, chain):
    assert client.locate(chain[1]).block_number == 2
    assert client.locate(chain[1]).status == "MVCC_READ_CONFLICT"
    assert (client.locate(chain[2]).block_number, client.locate(chain[2]).status) == (3, "VALID")
    assert client.locate("f" * 64) is None


def test_verify_accepts_an_intact_chain(client, chain):
    report = client.verify()
    assert report.ok
    assert (report.height, report.transactions) == (4, 5)


def test_verify_names_a_block_whose_transactions_were_changed(client, chain, gateway):
    block = gateway.blocks[2]
    tampered = bytearray(block.data.data[0])
    tampered[-3] ^= 0x01
    block.data.data[0] = bytes(tampered)
    report = client.verify()
    # The changed bytes are the end of the creator's signature: the transaction no longer verifies either.
    assert [(p.kind, p.ref) for p in report.problems] == [("block", "2"), ("transaction", "2/0")]
    assert "data_hash" in report.problems[0].detail
    assert report.problems[1].detail.endswith("the creator's signature does not verify")


def test_verify_names_a_broken_hash_chain(client, chain, gateway):
    gateway.blocks[2].header.previous_hash = b"\x00" * 32
    report = client.verify()
    refs = {(p.ref, p.detail.split()[0]) for p in report.problems}
    # Block 2 no longer points at block 1, and block 3 no longer points at (the changed) block 2.
    assert ("2", "previous_hash") in refs
    assert ("3", "previous_hash") in refs


def test_verify_names_a_block_signed_by_an_orderer_the_channel_does_not_know(client, chain, gateway):
    fabric_blocks.resign_block(gateway.blocks[3], fabric_blocks.Organisation("OrdererMSP").member("orderer"))
    report = client.verify()
    assert [(p.kind, p.ref) for p in report.problems] == [("block", "3"), ("block", "3")]
    assert report.problems[0].detail.startswith("orderer signature 0: the certificate is not issued by")


# --- configuration ------------------------------------------------------------------------------
@pytest.fixture
def fabric_env(tmp_path, identity, client_key, tls_material, monkeypatch):
    signcerts, keystore = tmp_path / "msp" / "signcerts", tmp_path / "msp" / "keystore"
    signcerts.mkdir(parents=True)
    keystore.mkdir()
    (signcerts / "cert.pem").write_bytes(identity.certificate_pem)
    (keystore / "9f2c_sk").write_bytes(key_pem(client_key))
    (tmp_path / "tls-ca.pem").write_bytes(tls_material["ca"])
    values = {
        "FABRIC_MSP_ID": "HospitalMSP",
        "FABRIC_CERT_PATH": str(signcerts / "cert.pem"),
        "FABRIC_KEY_PATH": str(keystore),  # an MSP keystore directory with one key
        "FABRIC_TLS_CA_PATH": str(tmp_path / "tls-ca.pem"),
        "FABRIC_TLS_SERVER_NAME": "peer0.hospital.example",
        "FABRIC_DEADLINE_SECONDS": "7.5",
        "FABRIC_SUBMIT_RETRIES": "5",
    }
    for name in ("FABRIC_TLS_DISABLED",):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_open_ledger_builds_a_fabric_client_from_url_and_environment(fabric_env, tls_gateway):
    ledger = open_ledger(f"fabric://{tls_gateway.endpoint}/{CHANNEL}/{CHAINCODE}")
    assert isinstance(ledger, FabricLedger)
    assert (ledger.endpoint, ledger.channel, ledger.chaincode) == (tls_gateway.endpoint, CHANNEL, CHAINCODE)
    assert (ledger.deadline_seconds, ledger.submit_retries) == (7.5, 5)
    assert ledger.identity.msp_id == "HospitalMSP"
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"ok": True}  # over TLS
    ledger.close()


@pytest.mark.parametrize(
    "url",
    [
        "fabric://peer0:7051/health",
        "fabric://peer0/health/health_platform",
        "fabric://peer0:notaport/health/health_platform",
        "fabric:///health/health_platform",
        "fabric://peer0:7051/health/health_platform/extra",
        "fabric://peer0:7051/health/health_platform?tls=no",
    ],
)
def test_a_malformed_url_is_a_clear_error(fabric_env, url):
    with pytest.raises(ValueError, match="fabric://"):
        open_ledger(url)


@pytest.mark.parametrize("name", ["FABRIC_MSP_ID", "FABRIC_CERT_PATH", "FABRIC_KEY_PATH", "FABRIC_TLS_CA_PATH"])
def test_a_missing_variable_is_named(fabric_env, monkeypatch, name):
    monkeypatch.delenv(name)
    with pytest.raises(ValueError, match=name):
        open_ledger("fabric://127.0.0.1:7051/health/health_platform")


@pytest.mark.parametrize(
    ("name", "value"),
    [("FABRIC_DEADLINE_SECONDS", "soon"), ("FABRIC_SUBMIT_RETRIES", "-1"), ("FABRIC_TLS_DISABLED", "maybe")],
)
def test_a_malformed_variable_is_named(fabric_env, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        open_ledger("fabric://127.0.0.1:7051/health/health_platform")


def test_tls_can_be_disabled_explicitly_for_development(fabric_env, monkeypatch, gateway):
    monkeypatch.delenv("FABRIC_TLS_CA_PATH")
    monkeypatch.setenv("FABRIC_TLS_DISABLED", "true")
    ledger = open_ledger(f"fabric://{gateway.endpoint}/{CHANNEL}/{CHAINCODE}")
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"ok": True}
    ledger.close()


def test_parse_url():
    assert parse_url("fabric://peer0.hospital:7051/health/health_platform") == (
        ["peer0.hospital:7051"],
        "health",
        "health_platform",
    )
    assert parse_url("fabric://peer0.hospital:7051,peer0.research:9051/health/health_platform") == (
        ["peer0.hospital:7051", "peer0.research:9051"],
        "health",
        "health_platform",
    )


@pytest.mark.parametrize(
    "url",
    [
        "fabric://a:1,a:1/health/cc",  # the same peer twice
        "fabric://a:1,/health/cc",  # an empty entry
        "fabric://a:1,b/health/cc",  # a peer without its port
        "fabric://a:1,b:99999/health/cc",  # a port out of range
        "fabric://a:1,user@b:2/health/cc",  # credentials have no place in a peer's address
    ],
)
def test_a_malformed_peer_list_is_a_clear_error(url):
    with pytest.raises(ValueError, match="LEDGER_URL"):
        parse_url(url)


# --- failover between gateway peers -----------------------------------------------------------
@pytest.fixture
def second_gateway(identity, channel):
    servicer = FakeGateway(identity, list(channel["peers"]))
    servicer.result = b'{"from":"second"}'
    server, port = start_server(servicer)
    servicer.endpoint = f"127.0.0.1:{port}"
    yield servicer
    servicer.hang.clear()
    server.stop(0)


def two_gateway_client(identity, *endpoints, deadline_seconds=5.0, failover_seconds=10.0) -> FabricLedger:
    return FabricLedger(
        list(endpoints),
        CHANNEL,
        CHAINCODE,
        identity=identity,
        tls_root_certificates=None,
        deadline_seconds=deadline_seconds,
        failover_seconds=failover_seconds,
    )


def test_calls_go_to_the_first_gateway_while_it_answers(identity, gateway, second_gateway):
    ledger = two_gateway_client(identity, gateway.endpoint, second_gateway.endpoint)
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"ok": True}
    assert ledger.submit("anchors", "AnchorRecord", "rec-1").json() == {"ok": True}
    assert gateway.calls() == ["Evaluate", "Endorse", "Submit", "CommitStatus"]
    assert second_gateway.calls() == []
    ledger.close()


def test_an_unreachable_gateway_fails_over_to_the_next_and_back_once_it_returns(identity, second_gateway):
    with socket_port() as port:
        pass  # nothing listens on the first peer's port: it is down
    ledger = two_gateway_client(identity, f"127.0.0.1:{port}", second_gateway.endpoint, failover_seconds=0.3)
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"from": "second"}
    assert ledger.submit("anchors", "AnchorRecord", "rec-1").json() == {"from": "second"}
    assert second_gateway.calls() == ["Evaluate", "Endorse", "Submit", "CommitStatus"]
    assert ledger.endpoint == second_gateway.endpoint  # the failed peer is tried last for a while
    time.sleep(0.35)
    assert ledger.endpoint == f"127.0.0.1:{port}"  # ... then first again: the client heals by itself
    ledger.close()


def test_a_frozen_gateway_costs_one_deadline_then_the_next_answers(identity, gateway, second_gateway):
    gateway.hang.set()
    ledger = two_gateway_client(identity, gateway.endpoint, second_gateway.endpoint, deadline_seconds=0.5)
    started = time.monotonic()
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-1").json() == {"from": "second"}
    assert ledger.evaluate("anchors", "ReadAnchor", "rec-2").json() == {"from": "second"}  # no second deadline
    assert time.monotonic() - started < 1.5
    ledger.close()


def test_a_contract_refusal_is_final_and_not_asked_of_the_next_gateway(identity, gateway, second_gateway):
    message = "chaincode response 500, not_found: no anchor for this record"
    gateway.evaluate_failure = (
        grpc.StatusCode.UNKNOWN,
        "evaluate call to endorser returned error: " + message,
        [message],
    )
    ledger = two_gateway_client(identity, gateway.endpoint, second_gateway.endpoint)
    with pytest.raises(ContractRejected):
        ledger.evaluate("anchors", "ReadAnchor", SECRET)
    assert second_gateway.calls() == []
    ledger.close()


def test_every_gateway_unreachable_is_ledger_unavailable(identity):
    with socket_port() as first, socket_port() as second:
        pass
    ledger = two_gateway_client(identity, f"127.0.0.1:{first}", f"127.0.0.1:{second}", deadline_seconds=2)
    with pytest.raises(LedgerUnavailable):
        ledger.evaluate("anchors", "ReadAnchor", "rec-1")
    ledger.close()


def test_a_gateway_short_of_endorsers_fails_over(identity, gateway, second_gateway):
    gateway.endorse_failures = [(grpc.StatusCode.FAILED_PRECONDITION, NO_ENDORSERS_MESSAGE, [])]
    ledger = two_gateway_client(identity, gateway.endpoint, second_gateway.endpoint)
    assert ledger.submit("anchors", "AnchorRecord", "rec-1").json() == {"from": "second"}
    assert gateway.calls() == ["Endorse"]
    ledger.close()


# --- reads endorsed by every organisation -----------------------------------------------------
def test_an_endorsed_read_is_endorsed_and_never_submitted(client, gateway):
    receipt = client.evaluate_endorsed("consent", "CheckAccessBatch", "{}")
    assert receipt.json() == {"ok": True}
    assert receipt.status == "ENDORSED"
    assert receipt.block_number is None
    assert gateway.calls() == ["Endorse"]


def test_an_endorsed_read_asks_again_when_the_peers_disagree_for_a_moment(client, gateway):
    gateway.endorse_failures = [MISMATCH]
    assert client.evaluate_endorsed("consent", "CheckAccessBatch", "{}").json() == {"ok": True}
    assert gateway.calls() == ["Endorse", "Endorse"]


def test_an_endorsed_read_whose_peers_keep_disagreeing_fails_closed(client, gateway):
    gateway.endorse_failures = [MISMATCH] * 4
    with pytest.raises(TransactionConflict, match="differently") as raised:
        client.evaluate_endorsed("consent", "CheckAccessBatch", SECRET)
    assert SECRET not in str(raised.value)
    assert gateway.calls() == ["Endorse"] * 4


def test_signature_verification_helper_rejects_tampering(identity):
    signature = identity.sign(b"payload")
    with pytest.raises(InvalidSignature):
        verify(identity, signature, b"payloaD")
