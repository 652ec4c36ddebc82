"""Ledger errors: what a caller can act on, whatever the backend."""


class LedgerError(Exception):
    """Base class. Messages carry codes and ids only, never payload values."""


class LedgerUnavailable(LedgerError):
    """The ledger could not be reached or did not answer. Transient: the caller may retry later.

    Callers that gate computation on the ledger must treat this as "no": fail closed.
    """


class ContractRejected(LedgerError):
    """The contract refused the call (invalid input, unknown key...). Retrying will not help.

    `code` is the contract's stable error code (e.g. "invalid_argument", "not_found").
    """

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    @classmethod
    def from_response_message(cls, text: str) -> "ContractRejected":
        """Parse a chaincode error response, "code: message", into its code and message."""
        code, sep, message = text.partition(": ")
        if sep and code and code.replace("_", "").isalnum() and code.islower():
            return cls(code, message)
        return cls("contract_error", text)


class TransactionConflict(LedgerError):
    """The transaction read a version that another transaction changed before it committed
    (Fabric's MVCC_READ_CONFLICT). Nothing of it was applied; re-running it may succeed."""


class LedgerIntegrityError(LedgerError):
    """The ledger's own store is inconsistent (an edited block, transaction or state row)."""
