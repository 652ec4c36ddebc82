"""Contract errors. The dispatcher turns an exception into the response message "code: message",
which the ledger client parses back into ledger.ContractRejected(code, message)."""


class ContractError(Exception):
    code = "contract_error"

    def __init__(self, message: str, *, code: str | None = None):
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{self.code}: {message}")


class InvalidArgument(ContractError):
    code = "invalid_argument"


class NotFound(ContractError):
    code = "not_found"


class AlreadyExists(ContractError):
    code = "already_exists"


class VersionOutOfOrder(ContractError):
    code = "version_out_of_order"
