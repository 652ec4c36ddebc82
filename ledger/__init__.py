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


def open_ledger(url: str) -> LedgerClient:
    """Open the backend named by `url` (the LEDGER_URL setting)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("LEDGER_URL must look like embedded:///path/to/ledger.sqlite3")
    if scheme == "embedded":
        from ledger.embedded import EmbeddedLedger

        return EmbeddedLedger(rest)
    if scheme == "fabric":
        from ledger.fabric import FabricLedger

        return FabricLedger.from_url(url)
    raise ValueError(f"unknown ledger backend {scheme!r}")
