"""The ledger: a LedgerClient protocol and its backends. Free of Django.

embedded://<path>   the chaincode/ contracts run in-process over SQLite (ledger.embedded)
fabric://<gateway host:port>/<channel>/<chaincode name>
                    a Hyperledger Fabric network through its Gateway (ledger.fabric); the client's
                    identity, TLS and deadlines come from the FABRIC_* environment variables
"""

from ledger.client import (
    BlockSummary,
    BlockTransaction,
    ChaincodeEvent,
    LedgerClient,
    Problem,
    Receipt,
    TransactionLocation,
    VerificationReport,
)
from ledger.errors import (
    ContractRejected,
    LedgerError,
    LedgerIntegrityError,
    LedgerUnavailable,
    TransactionConflict,
)

__all__ = [
    "BlockSummary",
    "BlockTransaction",
    "ChaincodeEvent",
    "ContractRejected",
    "LedgerClient",
    "LedgerError",
    "LedgerIntegrityError",
    "LedgerUnavailable",
    "Problem",
    "Receipt",
    "TransactionConflict",
    "TransactionLocation",
    "VerificationReport",
    "open_ledger",
]


def open_ledger(url: str, *, busy_timeout_seconds: float | None = None) -> LedgerClient:
    """Open the backend named by `url` (the LEDGER_URL setting). `busy_timeout_seconds`: how long an embedded
    ledger call waits for a lock another process holds before it answers LedgerUnavailable."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("LEDGER_URL must look like embedded:///path/to/ledger.sqlite3")
    if scheme == "embedded":
        from ledger.embedded import EmbeddedLedger

        if busy_timeout_seconds is None:
            return EmbeddedLedger(rest)
        return EmbeddedLedger(rest, busy_timeout_seconds=busy_timeout_seconds)
    if scheme == "fabric":
        from ledger.fabric import FabricLedger

        return FabricLedger.from_url(url)
    raise ValueError(f"unknown ledger backend {scheme!r}")
