"""Ledger errors: what a caller can act on, whatever the backend.

They belong to the application's error family (health_platform.errors renders them): each carries a
stable `code`, the HTTP `status` an API answers with, and a message that names codes and ids only,
never argument or payload values.
"""

from typing import Any


class LedgerError(Exception):
    """Base class: a ledger fault the backend could not classify further (a refused identity, say)."""

    code = "ledger_error"
    status = 503
    retry_after: int | None = None
    public_message = "The ledger could not process the request; nothing was changed."

    @property
    def detail(self) -> Any:
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.public_message, "detail": self.detail}


class LedgerUnavailable(LedgerError):
    """The ledger could not be reached, did not answer in time, or its store failed (a lock, an I/O error).
    Transient: the caller may retry later.

    Callers that gate computation on the ledger must treat this as "no": fail closed.
    """

    code = "ledger_unavailable"
    retry_after = 5
    public_message = "The ledger did not answer; nothing was changed."


class TransactionConflict(LedgerUnavailable):
    """The transaction read a version that another transaction changed before it committed
    (Fabric's MVCC_READ_CONFLICT), again after the backend's own retries. Nothing of it was applied;
    re-running it may succeed, so it is a kind of LedgerUnavailable."""


class ContractRejected(LedgerError):
    """The contract refused the call (invalid input, unknown key...). Retrying will not help.

    `code` is the contract's stable error code (e.g. "invalid_argument", "not_found"); an API renders
    it as `ledger_rejected` with the contract's code in the detail.
    """

    status = 409
    public_message = "The ledger refused the transaction."

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    @property
    def detail(self) -> Any:
        return {"ledger_code": self.code}

    def as_dict(self) -> dict[str, Any]:
        return {"code": "ledger_rejected", "message": self.public_message, "detail": self.detail}

    @classmethod
    def from_response_message(cls, text: str) -> "ContractRejected":
        """Parse a chaincode error response, "code: message", into its code and message."""
        code, sep, message = text.partition(": ")
        if sep and code and code.replace("_", "").isalnum() and code.islower():
            return cls(code, message)
        return cls("contract_error", text)


# Codes in a contract's error response that tell of a fault under the contract, not a refusal by it: the
# Fabric chaincode service answers "peer_error: ..." when the peer fails one of its state calls, and a
# contract may answer "ledger_unavailable: ...". They are transient like any other storage fault.
STORAGE_FAULT_CODES = frozenset({"peer_error", "ledger_unavailable"})


def error_from_response(text: str) -> LedgerError:
    """A chaincode error response ("code: message") as the error a caller acts on: LedgerUnavailable for a
    storage fault under the contract, ContractRejected for the contract's own refusal."""
    rejected = ContractRejected.from_response_message(text)
    if rejected.code in STORAGE_FAULT_CODES:
        return LedgerUnavailable(f"{rejected.code}: the ledger's store failed under the contract")
    return rejected


class LedgerIntegrityError(LedgerError):
    """The ledger's own store is inconsistent (an edited block, transaction or state row)."""

    code = "ledger_integrity_error"
