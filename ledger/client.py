"""The one door to the chain: a small protocol that both backends implement.

Arguments and payloads are strings/bytes, as on Fabric: the contracts define their own JSON.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson


@dataclass(frozen=True)
class ChaincodeEvent:
    name: str
    payload: bytes


@dataclass(frozen=True)
class Receipt:
    """What a ledger call returns.

    status is "VALID" for a committed transaction and "EVALUATED" for a read-only call, which is
    not ordered into a block (block_number is None).
    """

    tx_id: str
    block_number: int | None
    status: str
    payload: bytes
    events: tuple[ChaincodeEvent, ...] = field(default=())

    def json(self) -> Any:
        return orjson.loads(self.payload) if self.payload else None


@dataclass(frozen=True)
class TransactionLocation:
    """Where a committed transaction is: its block and its validation status."""

    tx_id: str
    block_number: int
    status: str


@dataclass(frozen=True)
class BlockTransaction:
    """A transaction as an auditor may see it: ids and status, never arguments or values."""

    tx_id: str
    status: str
    contract: str
    function: str
    timestamp: str


@dataclass(frozen=True)
class BlockSummary:
    """A committed block's header and its transactions (no payloads)."""

    number: int
    hash: str
    previous_hash: str
    data_hash: str
    transactions: tuple[BlockTransaction, ...]


@dataclass(frozen=True)
class Problem:
    kind: str  # "block", "transaction", "history" or "state"
    ref: str  # block number, transaction id or key (printable)
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """The result of re-checking the chain: the block hash chain on every backend; on the embedded
    ledger also every transaction, the key history and the world state; on Fabric also the orderers'
    block signatures and every valid transaction's creator, endorsements and endorsement policy."""

    height: int
    transactions: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@runtime_checkable
class LedgerClient(Protocol):
    def submit(self, contract: str, function: str, *args: str) -> Receipt:
        """Endorse, order and commit a transaction; return once it is committed and valid.

        Raises ContractRejected, TransactionConflict (after the backend's own retries) or
        LedgerUnavailable.
        """
        ...

    def evaluate(self, contract: str, function: str, *args: str) -> Receipt:
        """Run a read-only call against committed state. Nothing is recorded."""
        ...

    def evaluate_endorsed(self, contract: str, function: str, *args: str) -> Receipt:
        """evaluate, answered only when every organisation the endorsement policy names ran the call and got the
        same result (on a backend with one copy of the state, that copy's answer). Nothing is recorded. Raises
        TransactionConflict when the organisations' answers keep differing."""
        ...

    def locate(self, tx_id: str) -> TransactionLocation | None:
        """The block and status of a committed transaction, or None if the ledger has no such transaction."""
        ...

    def height(self) -> int:
        """The number of committed blocks."""
        ...

    def block_summary(self, number: int) -> BlockSummary | None:
        """Block `number`'s header hashes and transaction ids, or None past the height."""
        ...

    def verify(self) -> VerificationReport:
        """Re-check the chain and name every problem found."""
        ...

    def close(self) -> None: ...
