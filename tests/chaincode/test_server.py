"""The chaincode service, driven over a real gRPC connection by a stand-in for the Fabric peer.

Each defect of fabric-chaincode-python 2.5.4's own server is shown by running the same scenario
against the library's server (`library_service`), next to the project's server, which covers it.
If a "library" test starts failing, the library was fixed and the cover can be reconsidered.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2, chaincode_shim_pb2_grpc, proposal_response_pb2

from benchmarks.common import free_port
from chaincode import state
from chaincode.code_hash import code_hash, short_hash
from chaincode.contracts.anchors import AnchorContract
from chaincode.library import Contract, ContractChaincode, TransactionContext
from chaincode.server import ChaincodeServer, ServerConfig
from ledger.fabric import build_proposal
from ledger.fabric_identity import SigningIdentity
from tests.certificates import certificate, key_pem, pem

REPO = Path(__file__).resolve().parents[2]
Message = chaincode_shim_pb2.ChaincodeMessage
CHANNEL = "health"
# A package id whose label carries this code's hash: the only kind the server accepts from its environment.
CHAINCODE_ID = f"health_{short_hash(code_hash())}:0123abcd"
SECRET_HASH = "5ec12e7" + "9" * 57  # a distinctive state value: it must never reach a log
SECRET_PSEUDONYM = "ba5eba11" * 8


class ProbeContract(Contract):
    """Calls the two stub features the project's contracts do not exercise here."""

    Name = "probe"

    async def Emit(self, ctx: TransactionContext, name: str, payload: str) -> str:
        ctx.get_stub().set_event(name, payload.encode())
        return "emitted"

    async def Echo(self, ctx: TransactionContext, size: str) -> str:
        """A large answer, as a batch of thousands of records gives: its COMPLETED message takes several writes."""
        return "x" * int(size)

    async def Scan(self, ctx: TransactionContext, start: str, end: str) -> str:
        return json.dumps([key async for key, _ in state.scan(ctx.get_stub(), start, end)])

    async def Swallow(self, ctx: TransactionContext, key: str, value: str) -> str:
        with contextlib.suppress(Exception):  # a careless contract must not turn a refused write into success
            await ctx.get_stub().put_state(key, value.encode())
        return "ok"


def chaincode() -> ContractChaincode:
    return ContractChaincode.new_chaincode(AnchorContract(), ProbeContract())


# --- the peer's side of the chaincode protocol --------------------------------------------------
class Peer:
    """Connects to a chaincode server as a peer does; answers state calls from an in-memory world state.

    `refuse` names message types (e.g. "PUT_STATE") the peer answers with ERROR.
    """

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None, refuse: set[str] = frozenset()):
        self.target, self.credentials, self.refuse = target, credentials, set(refuse)
        self.state: dict[str, bytes] = {}
        self.asked: list[str] = []  # the type of every state call, in order
        self.completed: dict[str, asyncio.Future] = {}
        self.write_lock = asyncio.Lock()
        self.identity = _peer_identity()

    async def connect(self, timeout: float = 5.0) -> None:
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        else:
            self.channel = grpc.aio.secure_channel(
                self.target, self.credentials, options=[("grpc.ssl_target_name_override", "chaincode.example")]
            )
        self.call = chaincode_shim_pb2_grpc.ChaincodeStub(self.channel).Connect()
        register = await asyncio.wait_for(self.call.read(), timeout)
        assert register.type == Message.REGISTER
        assert chaincode_pb2.ChaincodeID.FromString(register.payload).name == CHAINCODE_ID
        await self.send(Message(type=Message.REGISTERED))
        await self.send(Message(type=Message.READY))
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader
        await self.channel.close()

    async def send(self, message) -> None:
        async with self.write_lock:
            await self.call.write(message)

    async def read(self) -> None:
        while True:
            message = await self.call.read()
            if message is grpc.aio.EOF:
                return
            if message.type in (Message.COMPLETED, Message.ERROR) and message.txid in self.completed:
                self.completed.pop(message.txid).set_result(message)
            else:
                asyncio.get_running_loop().create_task(self.answer(message))

    async def answer(self, message) -> None:
        kind = Message.Type.Name(message.type)
        self.asked.append(kind)
        reply = Message(type=Message.RESPONSE, txid=message.txid, channel_id=message.channel_id)
        if kind in self.refuse:
            reply = Message(type=Message.ERROR, payload=b"refused by the peer", txid=message.txid)
        elif kind == "GET_STATE":
            reply.payload = self.state.get(chaincode_shim_pb2.GetState.FromString(message.payload).key, b"")
        elif kind == "PUT_STATE":
            request = chaincode_shim_pb2.PutState.FromString(message.payload)
            self.state[request.key] = request.value
        elif kind == "DEL_STATE":
            self.state.pop(chaincode_shim_pb2.DelState.FromString(message.payload).key, None)
        elif kind == "GET_STATE_BY_RANGE":
            request = chaincode_shim_pb2.GetStateByRange.FromString(message.payload)
            results = [
                chaincode_shim_pb2.QueryResultBytes(
                    resultBytes=kv_query_result_pb2.KV(key=k, value=v).SerializeToString()
                )
                for k, v in sorted(self.state.items())
                if request.startKey <= k < (request.endKey or "\U0010ffff")
            ]
            reply.payload = chaincode_shim_pb2.QueryResponse(
                results=results, has_more=False, id="q"
            ).SerializeToString()
        elif kind in ("GET_HISTORY_FOR_KEY", "QUERY_STATE_CLOSE"):
            reply.payload = chaincode_shim_pb2.QueryResponse(has_more=False, id="q").SerializeToString()
        else:
            reply = Message(type=Message.ERROR, payload=b"unsupported", txid=message.txid)
        reply.channel_id = message.channel_id
        await self.send(reply)

    async def transact(self, function: str, *args: str, timeout: float = 10.0):
        """Send a TRANSACTION and wait for its COMPLETED (or ERROR) message."""
        proposal = build_proposal(self.identity, CHANNEL, "health_platform", function, args)
        future = asyncio.get_running_loop().create_future()
        self.completed[proposal.tx_id] = future
        await self.send(
            Message(
                type=Message.TRANSACTION,
                payload=chaincode_pb2.ChaincodeInput(args=[a.encode() for a in (function, *args)]).SerializeToString(),
                txid=proposal.tx_id,
                channel_id=CHANNEL,
                proposal=proposal.signed,
            )
        )
        return await asyncio.wait_for(future, timeout)


def response(message) -> proposal_response_pb2.Response:
    assert message.type == Message.COMPLETED, Message.Type.Name(message.type)
    return proposal_response_pb2.Response.FromString(message.payload)


_IDENTITY: list[SigningIdentity] = []


def _peer_identity() -> SigningIdentity:
    if not _IDENTITY:
        key = ec.generate_private_key(ec.SECP256R1())
        _IDENTITY.append(SigningIdentity("HospitalMSP", pem(certificate("client", key)), key))
    return _IDENTITY[0]


# --- servers --------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def project_server(config: ServerConfig | None = None, *, serialise_writes: bool = True):
    server = ChaincodeServer(
        chaincode(),
        config or ServerConfig(address="127.0.0.1:0", chaincode_id=CHAINCODE_ID),
        serialise_writes=serialise_writes,
    )
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def library_service():
    """fabric-chaincode-python's own chaincode server, as its start() builds it."""
    from fabric_chaincode_python.fabric_shim.server import ChaincodeService

    server = grpc.aio.server()
    chaincode_shim_pb2_grpc.add_ChaincodeServicer_to_server(ChaincodeService(CHAINCODE_ID, chaincode()), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


SERVERS = {
    "project": project_server,
    "project-unserialised": lambda: project_server(serialise_writes=False),
    "library": library_service,
}


async def with_peer(server: str, scenario, **peer_options):
    async with SERVERS[server]() as target:
        peer = Peer(target, **peer_options)
        await peer.connect()
        try:
            return await scenario(peer)
        finally:
            await peer.close()


def anchor_args(n: int) -> tuple[str, ...]:
    return (f"rec-{n}", SECRET_PSEUDONYM, format(n, "064x"), "1")


# --- defect 1: concurrent transactions race on the stream writes ----------------------------------
# Two writes in flight on one grpc.aio stream fail with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS; a lost
# COMPLETED leaves the peer waiting until its timeout. Whether writes overlap depends on timing, and
# more so when messages are large (a batch of thousands of records), so each round mixes large answers,
# state calls, and both.
ROUNDS = ("large", "mixed", "state")


def _round_call(peer: Peer, kind: str, n: int, timeout: float):
    if kind == "large" or (kind == "mixed" and n % 2):
        return peer.transact("probe:Echo", "200000", timeout=timeout)
    return peer.transact("anchors:AnchorRecord", *anchor_args(n), timeout=timeout)


async def _concurrent_rounds(peer: Peer, *, repeat: int, timeout: float) -> list:
    """32 concurrent transactions per round; raises TimeoutError if one is never answered."""
    completed = []
    for _ in range(repeat):
        for kind in ROUNDS:
            completed += await asyncio.gather(*(_round_call(peer, kind, n, timeout) for n in range(32)))
    return completed


def test_32_concurrent_transactions_all_complete():
    completed = asyncio.run(with_peer("project", lambda peer: _concurrent_rounds(peer, repeat=3, timeout=10.0)))
    assert len(completed) == 3 * len(ROUNDS) * 32
    assert {response(message).status for message in completed} == {200}
    anchored = {json.loads(response(m).payload)["record_id"] for m in completed if response(m).payload[:1] == b"{"}
    assert anchored == {f"rec-{n}" for n in range(32)}


@pytest.mark.parametrize("server", ["project-unserialised", "library"])
def test_without_serialised_writes_transactions_are_lost(server):
    """The defect, shown on the library's server and on this one with its lock taken out."""

    def attempt() -> None:
        asyncio.run(with_peer(server, lambda peer: _concurrent_rounds(peer, repeat=1, timeout=2.0)))

    lost = False
    for _attempt in range(8):  # each attempt loses a transaction with probability ~2/3 here
        try:
            attempt()
        except TimeoutError:
            lost = True
            break
    assert lost, "32 concurrent transactions always completed: the defect did not show"


# --- defect 2: set_event never reaches the peer ----------------------------------------------------
async def _emit(peer: Peer):
    return await peer.transact("probe:Emit", "AccessLogged", '{"count":3}')


def test_the_event_is_in_the_completed_message():
    message = asyncio.run(with_peer("project", _emit))
    assert response(message).status == 200
    assert message.HasField("chaincode_event")
    assert message.chaincode_event.event_name == "AccessLogged"
    assert message.chaincode_event.payload == b'{"count":3}'


def test_library_drops_the_event():
    message = asyncio.run(with_peer("library", _emit))
    assert response(message).status == 200
    assert not message.HasField("chaincode_event")


# --- defect 3: an ERROR from the peer on a state call is taken as success ----------------------------
def test_a_refused_put_state_fails_the_transaction():
    message = asyncio.run(
        with_peer("project", lambda peer: peer.transact("anchors:AnchorRecord", *anchor_args(1)), refuse={"PUT_STATE"})
    )
    assert response(message).status == 500
    assert response(message).message == "peer_error: the peer refused PUT_STATE"


def test_a_refused_put_state_fails_the_transaction_even_if_the_contract_swallows_it():
    message = asyncio.run(
        with_peer("project", lambda peer: peer.transact("probe:Swallow", "k", "v"), refuse={"PUT_STATE"})
    )
    assert response(message).status == 500
    assert "PUT_STATE" in response(message).message


def test_a_refused_get_state_fails_the_transaction():
    async def scenario(peer: Peer):
        return await peer.transact("anchors:ReadAnchor", "rec-1")

    message = asyncio.run(with_peer("project", scenario, refuse={"GET_STATE"}))
    assert response(message).status == 500
    assert response(message).message == "peer_error: the peer refused GET_STATE"


def test_library_takes_a_refused_put_state_as_success():
    message = asyncio.run(
        with_peer("library", lambda peer: peer.transact("anchors:AnchorRecord", *anchor_args(1)), refuse={"PUT_STATE"})
    )
    assert response(message).status == 200


# --- a range read to its end is not closed again -----------------------------------------------------
# The peer closes a range when it answers its last page, and every range a transaction left open when the
# transaction completes; the library's iterator closes it again, a round trip on the stream for nothing.
async def _scan(peer: Peer) -> tuple[list[str], list[str]]:
    peer.state = {"a1": b"1", "a2": b"2", "b1": b"3"}
    message = await peer.transact("probe:Scan", "a", "b")
    return json.loads(response(message).payload), peer.asked


@pytest.mark.parametrize(
    ("server", "calls"),
    [("project", ["GET_STATE_BY_RANGE"]), ("library", ["GET_STATE_BY_RANGE", "QUERY_STATE_CLOSE"])],
)
def test_a_range_read_to_its_end_makes_no_close_call(server, calls):
    assert asyncio.run(with_peer(server, _scan)) == (["a1", "a2"], calls)


# --- defect 4: state values in the logs ------------------------------------------------------------
async def _write_and_read(peer: Peer) -> list:
    written = await peer.transact("anchors:AnchorRecord", "rec-quiet", SECRET_PSEUDONYM, SECRET_HASH, "1")
    read = await peer.transact("anchors:ReadAnchor", "rec-quiet")
    return [written, read]


@pytest.fixture
def verbose_logging(caplog):
    """Root at DEBUG and the library's logger reset to NOTSET, as a deployment's logging config may leave them."""
    library_logger = logging.getLogger("asyncio")
    saved = library_logger.level
    library_logger.setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)
    yield caplog
    library_logger.setLevel(saved)


def test_no_state_value_reaches_a_log_record(verbose_logging, capfd):
    messages = asyncio.run(with_peer("project", _write_and_read))
    assert json.loads(response(messages[1]).payload)["sha256"] == SECRET_HASH  # the value did go through
    logged = verbose_logging.text + "".join(capfd.readouterr())
    assert verbose_logging.records, "the scenario should log something (ids and codes)"
    assert SECRET_HASH not in logged
    assert SECRET_PSEUDONYM not in logged


def test_library_logs_state_values(verbose_logging, monkeypatch):
    # Without the project's filter on the library's logger (the project's server installs it when it starts).
    monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
    asyncio.run(with_peer("library", _write_and_read))
    assert SECRET_HASH in verbose_logging.text


# --- defect 5: TLS from the environment -------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Chaincode TLS CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("chaincode", server_key, issuer=ca, issuer_key=ca_key, dns="chaincode.example")
    peer_key = ec.generate_private_key(ec.SECP256R1())
    peer = certificate("peer0", peer_key, issuer=ca, issuer_key=ca_key)
    files = {
        "ca": pem(ca),
        "server.crt": pem(server),
        "server.key": key_pem(server_key),
        "peer.crt": pem(peer),
        "peer.key": key_pem(peer_key),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


def tls_environment(tls_files, *, mutual: bool) -> dict[str, str]:
    environment = {
        "CHAINCODE_SERVER_ADDRESS": "127.0.0.1:0",
        "CHAINCODE_ID": CHAINCODE_ID,
        "CHAINCODE_TLS_KEY": str(tls_files / "server.key"),
        "CHAINCODE_TLS_CERT": str(tls_files / "server.crt"),
    }
    if mutual:
        environment["CHAINCODE_CLIENT_CA_CERT"] = str(tls_files / "ca")
    return environment


async def _register_and_transact(target: str, credentials) -> int:
    peer = Peer(target, credentials)
    await peer.connect(timeout=3.0)
    try:
        return response(await peer.transact("anchors:AnchorRecord", *anchor_args(5))).status
    finally:
        await peer.close()


def test_tls_from_the_environment_serves_tls_and_refuses_plaintext(tls_files):
    config = ServerConfig.from_environment(tls_environment(tls_files, mutual=False))
    assert config.tls

    async def scenario():
        async with project_server(config) as target:
            trusted = grpc.ssl_channel_credentials(root_certificates=(tls_files / "ca").read_bytes())
            assert await _register_and_transact(target, trusted) == 200
            with pytest.raises((grpc.aio.AioRpcError, TimeoutError)):
                await _register_and_transact(target, None)

    asyncio.run(scenario())


def test_mutual_tls_requires_the_peers_client_certificate(tls_files):
    config = ServerConfig.from_environment(tls_environment(tls_files, mutual=True))

    async def scenario():
        async with project_server(config) as target:
            ca = (tls_files / "ca").read_bytes()
            with_client_cert = grpc.ssl_channel_credentials(
                root_certificates=ca,
                private_key=(tls_files / "peer.key").read_bytes(),
                certificate_chain=(tls_files / "peer.crt").read_bytes(),
            )
            assert await _register_and_transact(target, with_client_cert) == 200
            with pytest.raises((grpc.aio.AioRpcError, TimeoutError)):
                await _register_and_transact(target, grpc.ssl_channel_credentials(root_certificates=ca))

    asyncio.run(scenario())


def test_library_ignores_the_tls_environment(tls_files, monkeypatch):
    """The defect, shown: with the TLS variables set, the library's start() still serves plaintext."""
    from fabric_chaincode_python.fabric_shim import server as library_server

    for name, value in tls_environment(tls_files, mutual=False).items():
        monkeypatch.setenv(name, value)

    async def scenario():
        # What ContractChaincode.start() -> fabric_shim.server.start() builds (key, cert, CA default to None).
        port = free_port()
        server = library_server._internal_server(
            ccid=CHAINCODE_ID, address=f"127.0.0.1:{port}", cc=chaincode(), key=None, cert=None, client_ca_certs=None
        )
        await server.start()
        try:
            assert await _register_and_transact(f"127.0.0.1:{port}", None) == 200
        finally:
            await server.stop(0)

    asyncio.run(scenario())


# --- configuration and the entry point ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"CHAINCODE_ID": CHAINCODE_ID, "CHAINCODE_TLS_DISABLED": "true"}, "CHAINCODE_SERVER_ADDRESS"),
        ({"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_TLS_DISABLED": "true"}, "CHAINCODE_ID"),
        ({"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": CHAINCODE_ID}, "CHAINCODE_TLS_KEY"),
        (
            {"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": CHAINCODE_ID, "CHAINCODE_TLS_DISABLED": "no"},
            "CHAINCODE_TLS_DISABLED",
        ),
        (
            {
                "CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999",
                "CHAINCODE_ID": CHAINCODE_ID,
                "CHAINCODE_TLS_KEY": "/nonexistent/key.pem",
                "CHAINCODE_TLS_CERT": "/nonexistent/cert.pem",
            },
            "CHAINCODE_TLS_KEY",
        ),
    ],
)
def test_configuration_errors_name_the_variable(environment, named):
    with pytest.raises(ValueError, match=named):
        ServerConfig.from_environment(environment)


def test_tls_is_off_only_when_disabled_explicitly():
    config = ServerConfig.from_environment(
        {"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": CHAINCODE_ID, "CHAINCODE_TLS_DISABLED": "true"}
    )
    assert not config.tls


def test_python_m_chaincode_server_serves_the_project_chaincode_and_stops_on_sigterm():
    port = free_port()
    environment = {
        **os.environ,
        "CHAINCODE_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "CHAINCODE_ID": CHAINCODE_ID,
        "CHAINCODE_TLS_DISABLED": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "chaincode.server"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        async def scenario():
            for _ in range(100):  # wait for the listener
                try:
                    peer = Peer(f"127.0.0.1:{port}")
                    await peer.connect(timeout=1.0)
                    break
                except (grpc.aio.AioRpcError, TimeoutError):
                    await peer.channel.close()
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the chaincode server did not start")
            try:
                message = await peer.transact("anchors:AnchorRecord", "rec-cli", SECRET_PSEUDONYM, SECRET_HASH, "1")
                return response(message)
            finally:
                await peer.close()

        result = asyncio.run(scenario())
        assert result.status == 200
        assert json.loads(result.payload)["record_id"] == "rec-cli"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert SECRET_HASH.encode() not in output
    assert b"chaincode_server_started" in output
