"""The embedded ledger: the chaincode/ contracts run in-process over one SQLite file.

It keeps what a Fabric peer keeps, so that the same contracts behave the same way:
- world state with a version per key (block number, position in block);
- key history (every committed write, for GetHistoryForKey);
- a block log: each transaction is ordered into a block that carries the hash of its
  transactions and the hash of the previous block;
- the read-version (MVCC) check at commit: a transaction whose reads or range reads changed since it
  was simulated is recorded as invalid (MVCC_READ_CONFLICT) and none of its writes apply.

Contracts are dispatched through the library's own ContractChaincode.invoke with a stub over this
store, exactly as the peer would dispatch them. Transactions are simulated on a consistent read
snapshot and committed under SQLite's write lock (BEGIN IMMEDIATE), so the web process and any
number of worker processes can share the file. verify() re-derives every hash and the whole state
from the block log, so an edited block, transaction, history or state row is reported.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fabric_protos.ledger.queryresult import kv_query_result_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from chaincode.library import ChaincodeStub
from ledger.client import (
    BlockSummary,
    BlockTransaction,
    ChaincodeEvent,
    Problem,
    Receipt,
    TransactionLocation,
    VerificationReport,
)
from ledger.errors import LedgerUnavailable, TransactionConflict, error_from_response

GENESIS_PREVIOUS_HASH = "0" * 64
VALID = "VALID"
MVCC_READ_CONFLICT = "MVCC_READ_CONFLICT"
PHANTOM_READ_CONFLICT = "PHANTOM_READ_CONFLICT"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    number        INTEGER PRIMARY KEY,
    previous_hash TEXT NOT NULL,
    data_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    tx_id        TEXT PRIMARY KEY,
    block_number INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    contract     TEXT NOT NULL,
    function     TEXT NOT NULL,
    args         TEXT NOT NULL,
    creator      TEXT NOT NULL,
    timestamp    TEXT NOT NULL,
    status       TEXT NOT NULL,
    read_set     TEXT NOT NULL,
    write_set    TEXT NOT NULL,
    response     BLOB NOT NULL,
    events       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    UNIQUE (block_number, position)
);
CREATE TABLE IF NOT EXISTS state (
    key          BLOB PRIMARY KEY,
    value        BLOB NOT NULL,
    block_number INTEGER NOT NULL,
    position     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    key          BLOB NOT NULL,
    block_number INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    tx_id        TEXT NOT NULL,
    value        BLOB,
    timestamp    TEXT NOT NULL,
    PRIMARY KEY (key, block_number, position)
);
"""

Version = tuple[int, int]


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _canonical(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only: what transaction hashes are computed over.

    The values hashed are strings, integers, null and lists of them. orjson writes those as json.dumps
    does, except that it leaves non-ASCII characters and DEL unescaped: when its output has neither,
    it is json.dumps' byte for byte (tests/ledger/test_embedded.py holds it to that) at a fraction of
    the cost, which counts for a batch of thousands of access events.
    """
    try:
        fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        fast = b"\x80"  # not ASCII: the general path
    if fast.isascii() and b"\x7f" not in fast:
        return fast.decode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def transaction_hash(tx: dict[str, Any]) -> str:
    """The hash of a transaction as stored: every field but the hash itself."""
    return _sha256(_canonical({k: v for k, v in tx.items() if k != "hash"}))


def block_hash(number: int, previous_hash: str, data_hash: str, created_at: str) -> str:
    return _sha256(f"{number}|{previous_hash}|{data_hash}|{created_at}")


def data_hash(tx_hashes: list[str]) -> str:
    return _sha256("".join(tx_hashes))


@dataclass
class Simulation:
    """A transaction executed against a read snapshot but not yet committed (an endorsement)."""

    tx_id: str
    contract: str
    function: str
    args: list[str]
    creator: str
    timestamp: str
    status_code: int
    message: str
    payload: bytes
    read_set: dict[bytes, Version | None] = field(default_factory=dict)
    range_reads: list[tuple[bytes, bytes, list[tuple[bytes, Version]]]] = field(default_factory=list)
    write_set: dict[bytes, bytes | None] = field(default_factory=dict)
    events: list[ChaincodeEvent] = field(default_factory=list)
    storage_fault: str | None = None  # a SQLite error under the contract: the ledger did not answer

    @property
    def ok(self) -> bool:
        return self.status_code < 400


class _EmbeddedStub:
    """The chaincode stub over a read snapshot: reads record versions, writes are buffered.

    As on Fabric, reads see committed state only (not this transaction's own writes).
    """

    def __init__(self, connection: sqlite3.Connection, simulation: Simulation, timestamp_ns: int, channel: str):
        self._connection = connection
        self._simulation = simulation
        self._channel = channel
        self._timestamp = Timestamp(seconds=timestamp_ns // 1_000_000_000, nanos=timestamp_ns % 1_000_000_000)

    # --- identity and arguments -------------------------------------------------------------
    def get_function_and_parameters(self) -> tuple[str, list[str]]:
        return f"{self._simulation.contract}:{self._simulation.function}", list(self._simulation.args)

    def get_txid(self) -> str:
        return self._simulation.tx_id

    def get_channel_id(self) -> str:
        return self._channel

    def get_creator(self) -> dict[str, Any]:
        return {"mspid": self._simulation.creator, "idBytes": b""}

    def get_tx_timestamp(self) -> Timestamp:
        return self._timestamp

    def get_transient(self) -> dict[str, bytes]:
        return {}

    # --- state ------------------------------------------------------------------------------
    def _rows(self, query: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Run a read for the contract. A SQLite error (a lock held past the busy timeout, an I/O error) is
        recorded on the simulation before the contract sees it: whatever the contract or the chaincode
        library makes of the exception, the call ends as LedgerUnavailable, never as the contract's refusal."""
        try:
            return self._connection.execute(query, parameters).fetchall()
        except sqlite3.Error as error:
            self._simulation.storage_fault = self._simulation.storage_fault or type(error).__name__
            raise

    async def get_state(self, key: str) -> bytes:
        encoded = key.encode()
        rows = self._rows("SELECT value, block_number, position FROM state WHERE key = ?", (encoded,))
        row = rows[0] if rows else None
        self._simulation.read_set.setdefault(encoded, None if row is None else (row[1], row[2]))
        return b"" if row is None else bytes(row[0])

    async def get_states(self, keys: list[str]) -> list[bytes]:
        """get_state for many keys in a few queries (500 keys each): what one get_state per key would answer
        and record in the read set. Fabric's shim has no such call; chaincode.state.get_json_many reads one key
        at a time there."""
        encoded = [key.encode() for key in keys]
        found: dict[bytes, tuple[bytes, int, int]] = {}
        unique = list(dict.fromkeys(encoded))
        for offset in range(0, len(unique), 500):
            chunk = unique[offset : offset + 500]
            query = f"SELECT key, value, block_number, position FROM state WHERE key IN ({','.join('?' * len(chunk))})"  # noqa: S608
            for key, value, block_number, position in self._rows(query, tuple(chunk)):
                found[bytes(key)] = (bytes(value), block_number, position)
        answers = []
        for key in encoded:
            row = found.get(key)
            self._simulation.read_set.setdefault(key, None if row is None else (row[1], row[2]))
            answers.append(b"" if row is None else row[0])
        return answers

    async def put_state(self, key: str, value: bytes | str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        data = value.encode() if isinstance(value, str) else bytes(value)
        if not data:
            # Fabric treats an empty value as a delete; make that explicit rather than silent.
            raise ValueError("value must not be empty (use delete_state)")
        self._simulation.write_set[key.encode()] = data

    async def delete_state(self, key: str) -> None:
        self._simulation.write_set[key.encode()] = None

    async def get_state_by_range(self, start_key: str, end_key: str) -> AsyncIterator[Any]:
        start, end = start_key.encode(), (end_key.encode() if end_key else None)
        query = "SELECT key, value, block_number, position FROM state WHERE key >= ?"
        parameters: tuple[bytes, ...] = (start,)
        if end is not None:
            query += " AND key < ?"
            parameters = (start, end)
        rows = self._rows(query + " ORDER BY key", parameters)
        self._simulation.range_reads.append((start, end or b"", [(bytes(row[0]), (row[2], row[3])) for row in rows]))
        return _iterate([kv_query_result_pb2.KV(key=bytes(row[0]).decode(), value=bytes(row[1])) for row in rows])

    async def get_state_by_partial_composite_key(self, object_type: str, attributes: list[str]) -> AsyncIterator[Any]:
        prefix = self.create_composite_key(object_type, attributes)
        return await self.get_state_by_range(prefix, prefix + "\U0010ffff")

    async def get_history_for_key(self, key: str) -> AsyncIterator[Any]:
        """Newest first, as Fabric's GetHistoryForKey answers."""
        rows = self._rows(
            "SELECT tx_id, value, timestamp FROM history WHERE key = ? ORDER BY block_number DESC, position DESC",
            (key.encode(),),
        )
        modifications = []
        for tx_id, value, timestamp in rows:
            moment = Timestamp()
            moment.FromJsonString(timestamp)
            modifications.append(
                kv_query_result_pb2.KeyModification(
                    tx_id=tx_id,
                    value=b"" if value is None else bytes(value),
                    timestamp=moment,
                    is_delete=value is None,
                )
            )
        return _iterate(modifications)

    # --- composite keys and events (the library's own key format) ------------------------------
    def create_composite_key(self, object_type: str, attributes: list[str]) -> str:
        return ChaincodeStub.create_composite_key(self, object_type, attributes)

    def split_composite_key(self, composite_key: str) -> tuple[str, list[str]]:
        return ChaincodeStub.split_composite_key(self, composite_key)

    def set_event(self, name: str, payload: bytes | str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("event name must be a non-empty string")
        data = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        self._simulation.events = [ChaincodeEvent(name=name, payload=data)]  # Fabric keeps the last one


async def _iterate(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _storage_faults(method: _Method) -> _Method:
    """A read of the chain that meets a SQLite error (a lock past the busy timeout, an unreadable file) raises
    LedgerUnavailable, as every other ledger call does, instead of the sqlite3 error itself."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"embedded ledger read failed: {type(error).__name__}") from error

    return guarded  # type: ignore[return-value]


def _printable(key: bytes) -> str:
    return key.decode(errors="replace").replace("\x00", "\u2400")


class EmbeddedLedger:
    """LedgerClient over a SQLite file. Safe to share between threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        creator: str = "HealthPlatformMSP",
        channel: str = "health",
        conflict_retries: int = 5,
        busy_timeout_seconds: float = 30.0,
        chaincode: Any = None,
    ):
        """`chaincode` defaults to the project's contracts (chaincode.build_chaincode())."""
        from chaincode import build_chaincode

        self.path = Path(path)
        self.creator = creator
        self.channel = channel
        self.conflict_retries = conflict_retries
        self._busy_timeout = busy_timeout_seconds
        self._chaincode = chaincode or build_chaincode()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._initialise()

    # --- LedgerClient -------------------------------------------------------------------------
    def submit(self, contract: str, function: str, *args: str) -> Receipt:
        for _attempt in range(self.conflict_retries + 1):
            simulation = self.simulate(contract, function, *args)
            if not simulation.ok:
                raise error_from_response(simulation.message)
            try:
                return self.commit(simulation)
            except TransactionConflict:
                continue
        raise TransactionConflict(f"{contract}:{function} conflicted {self.conflict_retries + 1} times")

    def evaluate(self, contract: str, function: str, *args: str) -> Receipt:
        simulation = self.simulate(contract, function, *args)
        if not simulation.ok:
            raise error_from_response(simulation.message)
        return Receipt(
            tx_id=simulation.tx_id,
            block_number=None,
            status="EVALUATED",
            payload=simulation.payload,
            events=tuple(simulation.events),
        )

    def evaluate_endorsed(self, contract: str, function: str, *args: str) -> Receipt:
        """One process holds the one copy of the state: its answer is every organisation's."""
        return self.evaluate(contract, function, *args)

    def locate(self, tx_id: str) -> TransactionLocation | None:
        try:
            row = (
                self._connection()
                .execute("SELECT block_number, status FROM transactions WHERE tx_id = ?", (tx_id,))
                .fetchone()
            )
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"embedded ledger read failed: {type(error).__name__}") from error
        return None if row is None else TransactionLocation(tx_id=tx_id, block_number=row[0], status=row[1])

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
            self._connections.clear()
        self._local = threading.local()

    # --- endorsement and commit (two phases, public for tests and tools) ----------------------
    def simulate(self, contract: str, function: str, *args: str) -> Simulation:
        """Execute the transaction on a consistent snapshot of committed state; write nothing."""
        if not all(isinstance(arg, str) for arg in args):
            raise TypeError("ledger arguments must be strings")
        nonce = secrets.token_bytes(24)
        timestamp_ns = time.time_ns()
        simulation = Simulation(
            tx_id=_sha256(nonce + self.creator.encode()),
            contract=contract,
            function=function,
            args=list(args),
            creator=self.creator,
            timestamp=_rfc3339(timestamp_ns),
            status_code=500,
            message="",
            payload=b"",
        )
        connection = self._connection()
        try:
            connection.execute("BEGIN")  # one read snapshot for the whole simulation
            try:
                stub = _EmbeddedStub(connection, simulation, timestamp_ns, self.channel)
                response = asyncio.run(self._chaincode.invoke(stub))
            finally:
                connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"embedded ledger read failed: {type(error).__name__}") from error
        if simulation.storage_fault is not None:
            raise LedgerUnavailable(f"embedded ledger read failed: {simulation.storage_fault}")
        simulation.status_code = response.status
        simulation.message = response.message
        simulation.payload = bytes(response.payload)
        return simulation

    def commit(self, simulation: Simulation) -> Receipt:
        """Order the simulated transaction into a new block and apply it if its reads still hold.

        A conflicting transaction is still recorded in the block log, as invalid, and then
        TransactionConflict is raised; nothing of its write set is applied.
        """
        if not simulation.ok:
            raise error_from_response(simulation.message)
        connection = self._connection()
        try:
            self._begin_write(connection)
            try:
                status = self._validate_reads(connection, simulation)
                receipt = self._append_block(connection, simulation, status)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as error:
            raise TransactionConflict("transaction id already committed") from error
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"embedded ledger write failed: {type(error).__name__}") from error
        if status != VALID:
            raise TransactionConflict(f"transaction {simulation.tx_id} invalidated: {status}")
        return receipt

    # --- reading the chain ------------------------------------------------------------------
    @_storage_faults
    def height(self) -> int:
        row = self._connection().execute("SELECT COALESCE(MAX(number), -1) + 1 FROM blocks").fetchone()
        return int(row[0])

    @_storage_faults
    def block_summary(self, number: int) -> BlockSummary | None:
        connection = self._connection()
        row = connection.execute(
            "SELECT number, previous_hash, data_hash, hash FROM blocks WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            return None
        transactions = tuple(
            BlockTransaction(tx_id=r[0], status=r[1], contract=r[2], function=r[3], timestamp=r[4])
            for r in connection.execute(
                "SELECT tx_id, status, contract, function, timestamp FROM transactions "
                "WHERE block_number = ? ORDER BY position",
                (number,),
            )
        )
        return BlockSummary(
            number=row[0], previous_hash=row[1], data_hash=row[2], hash=row[3], transactions=transactions
        )

    @_storage_faults
    def transaction(self, tx_id: str) -> dict[str, Any] | None:
        """A committed transaction's metadata (no payload values): where it is and its status."""
        row = (
            self._connection()
            .execute(
                "SELECT tx_id, block_number, position, contract, function, timestamp, status, hash "
                "FROM transactions WHERE tx_id = ?",
                (tx_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        keys = ("tx_id", "block_number", "position", "contract", "function", "timestamp", "status", "hash")
        return dict(zip(keys, row, strict=True))

    @_storage_faults
    def verify(self) -> VerificationReport:
        """Re-derive the chain and the state from the block log and report every difference."""
        connection = self._connection()
        problems: list[Problem] = []
        connection.execute("BEGIN")
        try:
            transactions = self._verify_chain(connection, problems)
            self._verify_history_and_state(connection, problems)
            height = connection.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        finally:
            connection.execute("ROLLBACK")
        return VerificationReport(height=height, transactions=transactions, problems=tuple(problems))

    # --- internals --------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                connection = sqlite3.connect(
                    self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
                )
                connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as error:
                raise LedgerUnavailable(f"embedded ledger cannot be opened: {type(error).__name__}") from error
            self._local.connection, self._local.pid = connection, os.getpid()
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _begin_write(self, connection: sqlite3.Connection) -> None:
        """Take the write lock, polling every 2 ms while another process holds it.

        SQLite's own busy handler backs off to 100 ms sleeps; ledger commits hold the lock for a few
        milliseconds to a few hundred, so a short poll keeps concurrent workers from idling.
        """
        deadline = time.monotonic() + self._busy_timeout
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) and "busy" not in str(error):
                        raise
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.002)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _initialise(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LedgerUnavailable("embedded ledger directory cannot be created") from error
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    connection.execute(statement)
                if connection.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 0:
                    created_at = _rfc3339(time.time_ns())
                    empty = data_hash([])
                    connection.execute(
                        "INSERT INTO blocks VALUES (0, ?, ?, ?, ?)",
                        (
                            GENESIS_PREVIOUS_HASH,
                            empty,
                            block_hash(0, GENESIS_PREVIOUS_HASH, empty, created_at),
                            created_at,
                        ),
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"embedded ledger cannot be initialised: {type(error).__name__}") from error

    def _validate_reads(self, connection: sqlite3.Connection, simulation: Simulation) -> str:
        keys = list(simulation.read_set)
        for offset in range(0, len(keys), 500):  # one query per 500 keys, not one per key
            chunk = keys[offset : offset + 500]
            current = {
                bytes(row[0]): (row[1], row[2])
                for row in connection.execute(
                    f"SELECT key, block_number, position FROM state WHERE key IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            }
            if any(current.get(key) != simulation.read_set[key] for key in chunk):
                return MVCC_READ_CONFLICT
        for start, end, seen in simulation.range_reads:
            query, parameters = "SELECT key, block_number, position FROM state WHERE key >= ?", [start]
            if end:
                query += " AND key < ?"
                parameters.append(end)
            now = [(bytes(r[0]), (r[1], r[2])) for r in connection.execute(query + " ORDER BY key", parameters)]
            if now != seen:
                return PHANTOM_READ_CONFLICT
        return VALID

    def _append_block(self, connection: sqlite3.Connection, simulation: Simulation, status: str) -> Receipt:
        previous_number, previous_hash = connection.execute(
            "SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 1"
        ).fetchone()
        number, position = previous_number + 1, 0
        tx = _transaction_row(simulation, number, position, status)
        tx["hash"] = transaction_hash(tx)
        created_at = _rfc3339(time.time_ns())
        block_data_hash = data_hash([tx["hash"]])
        connection.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
            (
                number,
                previous_hash,
                block_data_hash,
                block_hash(number, previous_hash, block_data_hash, created_at),
                created_at,
            ),
        )
        connection.execute(
            "INSERT INTO transactions VALUES (:tx_id, :block_number, :position, :contract, :function, :args, "
            ":creator, :timestamp, :status, :read_set, :write_set, :response, :events, :hash)",
            {**tx, "response": _unb64(tx["response"])},
        )
        if status == VALID:
            writes = sorted(simulation.write_set.items())
            connection.executemany(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                [(key, number, position, simulation.tx_id, value, simulation.timestamp) for key, value in writes],
            )
            connection.executemany(
                "DELETE FROM state WHERE key = ?", [(key,) for key, value in writes if value is None]
            )
            connection.executemany(
                "INSERT INTO state VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value, block_number = excluded.block_number, position = excluded.position",
                [(key, value, number, position) for key, value in writes if value is not None],
            )
        return Receipt(
            tx_id=simulation.tx_id,
            block_number=number,
            status=status,
            payload=simulation.payload,
            events=tuple(simulation.events),
        )

    def _verify_chain(self, connection: sqlite3.Connection, problems: list[Problem]) -> int:
        expected_number, previous_hash, count = 0, GENESIS_PREVIOUS_HASH, 0
        blocks = connection.execute(
            "SELECT number, previous_hash, data_hash, hash, created_at FROM blocks ORDER BY number"
        )
        for number, stored_previous, stored_data_hash, stored_hash, created_at in blocks:
            ref = str(number)
            if number != expected_number:
                problems.append(Problem("block", ref, f"block {expected_number} is missing"))
            if stored_previous != previous_hash:
                problems.append(Problem("block", ref, "previous_hash does not match the previous block's hash"))
            if block_hash(number, stored_previous, stored_data_hash, created_at) != stored_hash:
                problems.append(Problem("block", ref, "hash does not match the block's contents"))
            tx_hashes = []
            for tx in self._transactions_of(connection, number):
                count += 1
                recomputed = transaction_hash(tx)
                if recomputed != tx["hash"]:
                    problems.append(
                        Problem("transaction", tx["tx_id"], "hash does not match the transaction's contents")
                    )
                tx_hashes.append(tx["hash"])
            if data_hash(tx_hashes) != stored_data_hash:
                problems.append(Problem("block", ref, "data_hash does not match the block's transactions"))
            expected_number, previous_hash = number + 1, stored_hash
        orphans = connection.execute(
            "SELECT tx_id FROM transactions WHERE block_number NOT IN (SELECT number FROM blocks)"
        ).fetchall()
        problems.extend(Problem("transaction", row[0], "transaction is in no block") for row in orphans)
        return count

    def _verify_history_and_state(self, connection: sqlite3.Connection, problems: list[Problem]) -> None:
        """History must hold exactly the valid transactions' writes; state must equal the last write
        per key. Both are checked streaming, so verifying a large ledger needs little memory."""
        expected_writes = 0
        for tx in self._transactions_of(connection, None):
            if tx["status"] != VALID:
                continue
            for key_text, value_b64 in json.loads(tx["write_set"]):
                expected_writes += 1
                key, value = key_text.encode(), _unb64(value_b64)
                row = connection.execute(
                    "SELECT value, tx_id FROM history WHERE key = ? AND block_number = ? AND position = ?",
                    (key, tx["block_number"], tx["position"]),
                ).fetchone()
                if row is None or (None if row[0] is None else bytes(row[0])) != value or row[1] != tx["tx_id"]:
                    problems.append(
                        Problem("history", _printable(key), f"history differs from transaction {tx['tx_id']}")
                    )
        stored_writes = connection.execute("SELECT COUNT(*) FROM history").fetchone()[0]
        if stored_writes != expected_writes:
            problems.append(
                Problem("history", "*", f"history holds {stored_writes} writes, the block log {expected_writes}")
            )

        expected = self._last_writes(connection)
        actual = connection.execute("SELECT key, value, block_number, position FROM state ORDER BY key")
        stored = ((bytes(r[0]), (bytes(r[1]), (r[2], r[3]))) for r in actual)
        for key, (derived, found) in _merge_by_key(expected, stored):
            if derived is None:
                problems.append(Problem("state", _printable(key), "state row written by no transaction"))
            elif found is None:
                problems.append(Problem("state", _printable(key), "state row is missing"))
            elif derived != found:
                problems.append(Problem("state", _printable(key), "state row differs from the block log"))

    def _last_writes(self, connection: sqlite3.Connection) -> Iterator[tuple[bytes, tuple[bytes, Version]]]:
        """The last non-deleted write per key, from the history table, ordered by key."""
        rows = connection.execute(
            "SELECT key, value, block_number, position FROM history h WHERE (block_number, position) = "
            "(SELECT block_number, position FROM history WHERE key = h.key "
            " ORDER BY block_number DESC, position DESC LIMIT 1) AND value IS NOT NULL ORDER BY key"
        )
        for key, value, block_number, position in rows:
            yield bytes(key), (bytes(value), (block_number, position))

    @staticmethod
    def _transactions_of(connection: sqlite3.Connection, block_number: int | None) -> Iterator[dict[str, Any]]:
        query = (
            "SELECT tx_id, block_number, position, contract, function, args, creator, timestamp, status, "
            "read_set, write_set, response, events, hash FROM transactions"
        )
        if block_number is None:
            cursor = connection.execute(query + " ORDER BY block_number, position")
        else:
            cursor = connection.execute(query + " WHERE block_number = ? ORDER BY position", (block_number,))
        columns = [d[0] for d in cursor.description]
        for row in cursor:
            tx = dict(zip(columns, row, strict=True))
            tx["response"] = _b64(bytes(tx["response"]))
            yield tx


def _transaction_row(simulation: Simulation, number: int, position: int, status: str) -> dict[str, Any]:
    return {
        "tx_id": simulation.tx_id,
        "block_number": number,
        "position": position,
        "contract": simulation.contract,
        "function": simulation.function,
        "args": _canonical(simulation.args),
        "creator": simulation.creator,
        "timestamp": simulation.timestamp,
        "status": status,
        "read_set": _canonical(sorted([k.decode(), list(v) if v else None] for k, v in simulation.read_set.items())),
        "write_set": _canonical(sorted([k.decode(), _b64(v)] for k, v in simulation.write_set.items())),
        "response": _b64(simulation.payload),
        "events": _canonical([[e.name, _b64(e.payload)] for e in simulation.events]),
    }


def _merge_by_key(
    left: Iterator[tuple[bytes, Any]], right: Iterator[tuple[bytes, Any]]
) -> Iterator[tuple[bytes, tuple[Any, Any]]]:
    """Full outer merge of two key-ordered streams: (key, (left value or None, right value or None))."""
    sentinel = (None, None)
    a, b = next(left, sentinel), next(right, sentinel)
    while a[0] is not None or b[0] is not None:
        if b[0] is None or (a[0] is not None and a[0] < b[0]):
            yield a[0], (a[1], None)  # type: ignore[misc]
            a = next(left, sentinel)
        elif a[0] is None or b[0] < a[0]:
            yield b[0], (None, b[1])
            b = next(right, sentinel)
        else:
            yield a[0], (a[1], b[1])
            a, b = next(left, sentinel), next(right, sentinel)


def _rfc3339(timestamp_ns: int) -> str:
    moment = Timestamp(seconds=timestamp_ns // 1_000_000_000, nanos=(timestamp_ns % 1_000_000_000) // 1000 * 1000)
    return moment.ToJsonString()
