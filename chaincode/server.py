"""Chaincode as a service: the gRPC server a Fabric peer connects to, serving chaincode.build_chaincode().

Run it as `python -m chaincode.server`, configured by the environment:

    CHAINCODE_SERVER_ADDRESS   host:port to listen on, e.g. 0.0.0.0:9999                     required
    CHAINCODE_ID               the chaincode package id (label:sha256) the peer knows it by;   required
                               its label must end in _<this code's short hash>
                               (chaincode.code_hash): the server refuses any other
    CHAINCODE_TLS_DISABLED     "true" to serve plaintext gRPC (development only)              default false
    CHAINCODE_TLS_KEY          path of the server's PEM private key      } required unless TLS is disabled
    CHAINCODE_TLS_CERT         path of the server's PEM certificate      }
    CHAINCODE_CLIENT_CA_CERT   path of the PEM CA of the peer's client certificate: when set, the
                               peer must present a certificate it signed (mutual TLS)          optional

These are the names Fabric's own chaincode-as-a-service samples read; in connection.json the peer
then needs "tls_required": true, the server's root CA and, for mutual TLS, its client key and cert.

Public API (stable), e.g. for tests that start the server in-process:

    config = ServerConfig.from_environment(os.environ)      # or ServerConfig(address=..., chaincode_id=...)
    server = ChaincodeServer(build_chaincode(), config)
    port = await server.start()      # the bound port (address "127.0.0.1:0" picks a free one)
    ...
    await server.stop()
    serve(config)                     # blocking: start, then stop gracefully on SIGTERM or SIGINT

fabric-chaincode-python 2.5.4 ships a server (fabric_shim.server) with defects this one does not have:
- concurrent transactions write to the one gRPC stream at once, which grpc.aio does not allow: a
  transaction's message is lost and it hangs until the peer's timeout. Here every write goes through
  one lock.
- stub.set_event() is recorded but never sent: here the last event set is in the COMPLETED message.
- an ERROR answer from the peer to GET_STATE, PUT_STATE or any other state call is taken as a success
  (GET_STATE even returns the error text as the value). Here the call raises, and the transaction fails
  even if the contract swallowed the exception.
- its stub and handler log keys, state values and whole messages at INFO. Here nothing of a
  transaction but its id and status is logged, whatever the logging configuration.
- it ignores the TLS environment variables (and reads CORE_* names a peer uses, not a chaincode server):
  here TLS comes from the CHAINCODE_* variables above, and is required unless disabled explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2,
    chaincode_shim_pb2_grpc,
    proposal_response_pb2,
)

from chaincode.code_hash import code_hash, label_problem
from chaincode.library import ChaincodeStub

log = structlog.get_logger("chaincode.server")

Message = chaincode_shim_pb2.ChaincodeMessage
ERROR_STATUS = 500
MAX_MESSAGE_BYTES = 100 * 1024 * 1024
_LIBRARY_DIRECTORY = str(Path(sys.modules[ChaincodeStub.__module__].__file__ or "").resolve().parents[1])


class PeerRefused(Exception):
    """The peer answered a state call with ERROR. The transaction must fail."""

    def __init__(self, call: str):
        self.call = call
        super().__init__(f"peer_error: the peer refused {call}")


class _LibraryRecordFilter(logging.Filter):
    """Drops every record the chaincode library logs itself: they carry keys, values and payloads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not os.path.realpath(record.pathname).startswith(_LIBRARY_DIRECTORY)


def silence_library_logging() -> None:
    """Keep the library's records out of every handler, whatever level its logger is set to later."""
    from chaincode.library import _shim_logging

    library_logger = _shim_logging.LOGGER
    if not any(isinstance(existing, _LibraryRecordFilter) for existing in library_logger.filters):
        library_logger.addFilter(_LibraryRecordFilter())


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerConfig:
    address: str
    chaincode_id: str
    tls_key: bytes | None = field(default=None, repr=False)
    tls_cert: bytes | None = None
    client_ca_cert: bytes | None = None

    @property
    def tls(self) -> bool:
        return self.tls_key is not None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if environ is None else environ

        def value(name: str) -> str:
            return env.get(name, "").strip()

        address, chaincode_id = value("CHAINCODE_SERVER_ADDRESS"), value("CHAINCODE_ID")
        for name, given in (("CHAINCODE_SERVER_ADDRESS", address), ("CHAINCODE_ID", chaincode_id)):
            if not given:
                raise ValueError(f"{name} must be set")
        problem = label_problem(chaincode_id, code_hash())
        if problem:
            raise ValueError(problem)
        disabled = value("CHAINCODE_TLS_DISABLED").lower()
        if disabled not in ("", "true", "false"):
            raise ValueError("CHAINCODE_TLS_DISABLED must be true or false")
        if disabled == "true":
            return cls(address=address, chaincode_id=chaincode_id)
        for name in ("CHAINCODE_TLS_KEY", "CHAINCODE_TLS_CERT"):
            if not value(name):
                raise ValueError(f"{name} must be set (or CHAINCODE_TLS_DISABLED=true for plaintext)")
        return cls(
            address=address,
            chaincode_id=chaincode_id,
            tls_key=_read(value("CHAINCODE_TLS_KEY"), "CHAINCODE_TLS_KEY"),
            tls_cert=_read(value("CHAINCODE_TLS_CERT"), "CHAINCODE_TLS_CERT"),
            client_ca_cert=(
                _read(value("CHAINCODE_CLIENT_CA_CERT"), "CHAINCODE_CLIENT_CA_CERT")
                if value("CHAINCODE_CLIENT_CA_CERT")
                else None
            ),
        )


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{name}={path} cannot be read: {error.strerror}") from None


# --- the protocol, one peer stream --------------------------------------------------------------
class _QuietStub(ChaincodeStub):
    """The library's stub without its INFO logging of keys and values."""

    async def get_state(self, key: str) -> bytes:
        return await self.client.handle_get_state("", key, self.channel_id, self.tx_id)

    async def put_state(self, key: str, value: bytes | str) -> Any:
        data = value.encode() if isinstance(value, str) else bytes(value)
        return await self.client.handle_put_state("", key, data, self.channel_id, self.tx_id)

    async def delete_state(self, key: str) -> Any:
        return await self.client.handle_delete_state("", key, self.channel_id, self.tx_id)

    # Range reads page by page, for chaincode.state.sweep: the peer answers up to 100 keys per message.
    async def range_first(self, start_key: str, end_key: str) -> tuple[list[tuple[str, bytes]], bool, str]:
        answer = await self.client.handle_get_state_by_range("", start_key, end_key, self.channel_id, self.tx_id)
        response = chaincode_shim_pb2.QueryResponse.FromString(answer.payload)
        return _entries(response), response.has_more, response.id

    async def range_next(self, query_id: str) -> tuple[list[tuple[str, bytes]], bool]:
        answer = await self.client.handle_query_state_next(query_id, self.channel_id, self.tx_id)
        response = chaincode_shim_pb2.QueryResponse.FromString(answer.payload)
        return _entries(response), response.has_more

    async def range_close(self, query_id: str) -> None:
        await self.client.handle_query_state_close(query_id, self.channel_id, self.tx_id)


def _entries(response: Any) -> list[tuple[str, bytes]]:
    """(key, value) of each result of a range read's QueryResponse."""
    parse = kv_query_result_pb2.KV.FromString
    return [(kv.key, kv.value) for kv in (parse(result.resultBytes) for result in response.results)]


@dataclass
class _Transaction:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    answer: asyncio.Future[Any] | None = None
    refused: str | None = None


class PeerStream:
    """One Connect stream: register, then run the peer's transactions concurrently.

    Every write to the stream goes through `send`, under one lock: grpc.aio allows one write at a time.
    A transaction's state calls are answered in order (one outstanding request per transaction, as
    the peer expects); transactions are told apart by (channel id, transaction id).
    """

    def __init__(self, chaincode_id: str, chaincode: Any, context: Any, *, serialise_writes: bool = True):
        self._chaincode_id = chaincode_id
        self._chaincode = chaincode
        self._context = context
        self._write_lock: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if serialise_writes else contextlib.nullcontext()
        )
        self._transactions: dict[tuple[str, str], _Transaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = "created"

    async def send(self, message: Any) -> None:
        async with self._write_lock:
            await self._context.write(message)

    async def run(self, requests: AsyncIterable[Any]) -> None:
        register = Message(
            type=Message.REGISTER,
            payload=chaincode_pb2.ChaincodeID(name=self._chaincode_id).SerializeToString(),
        )
        register.timestamp.GetCurrentTime()
        await self.send(register)
        try:
            async for message in requests:
                self._receive(message)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _receive(self, message: Any) -> None:
        if message.type == Message.KEEPALIVE:
            self._spawn(self.send(message))
        elif self._state == "created" and message.type == Message.REGISTERED:
            self._state = "established"
        elif self._state == "established" and message.type == Message.READY:
            self._state = "ready"
            log.info("chaincode_registered", chaincode_id=self._chaincode_id)
        elif self._state == "ready" and message.type in (Message.RESPONSE, Message.ERROR):
            self._answer(message)
        elif self._state == "ready" and message.type in (Message.TRANSACTION, Message.INIT):
            self._spawn(self._run_transaction(message))
        else:
            log.warning("chaincode_unexpected_message", message_type=Message.Type.Name(message.type), state=self._state)
            error = f"chaincode cannot handle {Message.Type.Name(message.type)} while {self._state}"
            self._spawn(
                self.send(
                    Message(
                        type=Message.ERROR, payload=error.encode(), txid=message.txid, channel_id=message.channel_id
                    )
                )
            )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer(self, message: Any) -> None:
        transaction = self._transactions.get((message.channel_id, message.txid))
        if transaction is None or transaction.answer is None or transaction.answer.done():
            log.warning("chaincode_unexpected_answer", tx_id=message.txid)
            return
        transaction.answer.set_result(message)

    async def _run_transaction(self, message: Any) -> None:
        key = (message.channel_id, message.txid)
        transaction = self._transactions[key] = _Transaction()
        try:
            stub = _QuietStub(
                self,
                message.channel_id,
                message.txid,
                chaincode_pb2.ChaincodeInput.FromString(message.payload),
                message.proposal if message.HasField("proposal") else None,
            )
            if message.type == Message.INIT:
                response = await self._chaincode.init(stub)
            else:
                response = await self._chaincode.invoke(stub)
            if transaction.refused is not None:
                # The contract may have caught PeerRefused; the transaction fails all the same.
                response = proposal_response_pb2.Response(
                    status=ERROR_STATUS, message=str(PeerRefused(transaction.refused))
                )
            events = stub.get_events()
            completed = Message(
                type=Message.COMPLETED,
                payload=response.SerializeToString(),
                txid=message.txid,
                channel_id=message.channel_id,
            )
            if events:
                completed.chaincode_event.CopyFrom(events[-1])  # Fabric keeps one event per transaction
        except Exception as error:  # a defect in the chaincode itself: answer, do not leave the peer waiting
            log.warning("chaincode_transaction_crashed", tx_id=message.txid, error=type(error).__name__)
            completed = Message(
                type=Message.ERROR,
                payload=f"chaincode failed: {type(error).__name__}".encode(),
                txid=message.txid,
                channel_id=message.channel_id,
            )
        finally:
            del self._transactions[key]
        await self.send(completed)

    async def _ask(self, kind: int, payload: bytes, channel_id: str, tx_id: str) -> Any:
        """Send one state request for a running transaction and wait for the peer's answer."""
        transaction = self._transactions.get((channel_id, tx_id))
        if transaction is None:
            raise RuntimeError("state call outside a running transaction")
        name = Message.Type.Name(kind)
        async with transaction.lock:
            transaction.answer = asyncio.get_running_loop().create_future()
            try:
                await self.send(Message(type=kind, payload=payload, txid=tx_id, channel_id=channel_id))
                answer = await transaction.answer
            finally:
                transaction.answer = None
        if answer.type != Message.RESPONSE:
            transaction.refused = transaction.refused or name
            log.warning("chaincode_state_call_refused", tx_id=tx_id, call=name)
            raise PeerRefused(name)
        return answer

    # --- the client interface the library's ChaincodeStub calls ----------------------------------
    async def handle_get_state(self, collection: str, key: str, channel_id: str, tx_id: str) -> bytes:
        request = chaincode_shim_pb2.GetState(key=key, collection=collection)
        answer = await self._ask(Message.GET_STATE, request.SerializeToString(), channel_id, tx_id)
        return bytes(answer.payload)

    async def handle_put_state(self, collection: str, key: str, value: bytes, channel_id: str, tx_id: str) -> Any:
        request = chaincode_shim_pb2.PutState(key=key, value=value, collection=collection)
        return await self._ask(Message.PUT_STATE, request.SerializeToString(), channel_id, tx_id)

    async def handle_delete_state(self, collection: str, key: str, channel_id: str, tx_id: str) -> Any:
        request = chaincode_shim_pb2.DelState(key=key, collection=collection)
        return await self._ask(Message.DEL_STATE, request.SerializeToString(), channel_id, tx_id)

    async def handle_get_state_by_range(
        self,
        collection: str,
        start_key: str,
        end_key: str,
        channel_id: str,
        tx_id: str,
        metadata: bytes | None = None,
    ) -> Any:
        request = chaincode_shim_pb2.GetStateByRange(
            startKey=start_key or "", endKey=end_key or "", collection=collection
        )
        if metadata is not None:
            request.metadata = metadata
        return await self._ask(Message.GET_STATE_BY_RANGE, request.SerializeToString(), channel_id, tx_id)

    async def handle_get_query_result(
        self, collection: str, query: str, channel_id: str, tx_id: str, metadata: bytes | None = None
    ) -> Any:
        request = chaincode_shim_pb2.GetQueryResult(query=query, collection=collection)
        if metadata is not None:
            request.metadata = metadata
        return await self._ask(Message.GET_QUERY_RESULT, request.SerializeToString(), channel_id, tx_id)

    async def handle_get_history_for_key(self, key: str, channel_id: str, tx_id: str) -> Any:
        request = chaincode_shim_pb2.GetHistoryForKey(key=key)
        return await self._ask(Message.GET_HISTORY_FOR_KEY, request.SerializeToString(), channel_id, tx_id)

    async def handle_query_state_next(self, query_id: str, channel_id: str, tx_id: str) -> Any:
        request = chaincode_shim_pb2.QueryStateNext(id=query_id)
        return await self._ask(Message.QUERY_STATE_NEXT, request.SerializeToString(), channel_id, tx_id)

    async def handle_query_state_close(self, query_id: str, channel_id: str, tx_id: str) -> Any:
        request = chaincode_shim_pb2.QueryStateClose(id=query_id)
        return await self._ask(Message.QUERY_STATE_CLOSE, request.SerializeToString(), channel_id, tx_id)

    async def handle_invoke_chaincode(self, chaincode_name: str, args: list[Any], channel_id: str, tx_id: str) -> Any:
        spec = chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode_name),
            input=chaincode_pb2.ChaincodeInput(args=[arg.encode() if isinstance(arg, str) else arg for arg in args]),
        )
        answer = await self._ask(Message.INVOKE_CHAINCODE, spec.SerializeToString(), channel_id, tx_id)
        # The peer answers with the called chaincode's COMPLETED message; its payload is a Response.
        return Message.FromString(answer.payload)


class _ChaincodeService(chaincode_shim_pb2_grpc.ChaincodeServicer):
    def __init__(self, chaincode_id: str, chaincode: Any, *, serialise_writes: bool):
        self._chaincode_id = chaincode_id
        self._chaincode = chaincode
        self._serialise_writes = serialise_writes

    async def Connect(self, request_iterator: AsyncIterable[Any], context: Any) -> None:  # noqa: N802 - gRPC name
        log.info("chaincode_peer_connected", chaincode_id=self._chaincode_id)
        stream = PeerStream(self._chaincode_id, self._chaincode, context, serialise_writes=self._serialise_writes)
        await stream.run(request_iterator)


# --- the server -----------------------------------------------------------------------------------
class ChaincodeServer:
    """The chaincode service on one address; TLS as configured.

    `serialise_writes=False` reproduces the library's unserialised stream writes; it exists only so
    that a test can show the lock is needed. Never turn it off otherwise.
    """

    def __init__(self, chaincode: Any, config: ServerConfig, *, serialise_writes: bool = True):
        self.config = config
        self._chaincode = chaincode
        self._serialise_writes = serialise_writes
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        silence_library_logging()
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        chaincode_shim_pb2_grpc.add_ChaincodeServicer_to_server(
            _ChaincodeService(self.config.chaincode_id, self._chaincode, serialise_writes=self._serialise_writes),
            server,
        )
        if self.config.tls:
            credentials = grpc.ssl_server_credentials(
                [(self.config.tls_key, self.config.tls_cert)],
                root_certificates=self.config.client_ca_cert,
                require_client_auth=self.config.client_ca_cert is not None,
            )
            port = server.add_secure_port(self.config.address, credentials)
        else:
            port = server.add_insecure_port(self.config.address)
        await server.start()
        self._server, self.port = server, port
        log.info(
            "chaincode_server_started",
            chaincode_id=self.config.chaincode_id,
            port=port,
            tls=self.config.tls,
            mutual_tls=self.config.client_ca_cert is not None,
        )
        return port

    async def stop(self, grace: float | None = 3.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
            log.info("chaincode_server_stopped", chaincode_id=self.config.chaincode_id)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def serve(config: ServerConfig | None = None, chaincode: Any = None) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully."""
    from chaincode import build_chaincode

    config = config or ServerConfig.from_environment()
    server = ChaincodeServer(chaincode or build_chaincode(), config)

    async def run() -> None:
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal_number, stopping.set)
        await stopping.wait()
        await server.stop()

    asyncio.run(run())


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = ServerConfig.from_environment()
    except ValueError as error:
        print(f"chaincode server: {error}", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
