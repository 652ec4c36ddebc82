"""The one door to the chain: a small protocol that both backends implement.

Arguments and payloads are strings/bytes, as on Fabric: the contracts define their own JSON.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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
        return json.loads(self.payload) if self.payload else None


@dataclass(frozen=True)
class TransactionLocation:
    """Where a committed transaction is: its block and its validation status."""

    tx_id: str
    block_number: int
    status: str


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

    def locate(self, tx_id: str) -> TransactionLocation | None:
        """The block and status of a committed transaction, or None if the ledger has no such transaction."""
        ...

    def close(self) -> None: ...
