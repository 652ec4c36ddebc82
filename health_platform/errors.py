"""The one family of application errors.

Every error a user can see carries a stable machine-readable `code`, a human message and an
optional `detail` mapping. Messages and details name fields, limits and ids, never values: they
must not contain health data, keys or ciphertexts (they end up in responses and logs).
"""

from typing import Any

from ledger.errors import LedgerError, LedgerUnavailable

# For choice fields: Django's and DRF's default messages repeat the value sent ("x is not one of ...").
CHOICE_ERROR_MESSAGES = {"invalid_choice": "Choose one of the listed values."}


class ApplicationError(Exception):
    """Base class: `code` is stable API, `status` is the HTTP status the API answers with."""

    code = "application_error"
    status = 400
    message = "The request could not be processed."
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, code: str | None = None, detail: Any = None):
        self.message = message or self.message
        if code is not None:
            self.code = code
        self.detail = detail
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class ValidationFailed(ApplicationError):
    code = "validation_failed"
    status = 400
    message = "The input is not valid."


class PayloadTooLarge(ApplicationError):
    code = "payload_too_large"
    status = 413
    message = "The payload is larger than the configured limit."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    message = "Not found."


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403
    message = "You do not have permission to perform this action."


class SecondFactorEnrolmentRequired(ApplicationError):
    """A clinician, auditor or custodian with no second factor enrolled: nothing but enrolment until they have one."""

    code = "mfa_required"
    status = 403
    message = "Your role needs a second factor: enrol an authenticator app or a passkey at /accounts/2fa/ first."


class SecondFactorRequired(ApplicationError):
    """A staff API token asked for with a password alone: it needs a session that passed the second factor."""

    code = "second_factor_required"
    status = 403
    message = (
        "A password alone yields no token for this account: sign in to the portal with your second factor, then "
        "create a personal token at /accounts/tokens/ (or ask for one here with that session)."
    )


class Conflict(ApplicationError):
    code = "conflict"
    status = 409
    message = "The request conflicts with the current state."


class LedgerRejected(ApplicationError):
    code = "ledger_rejected"
    status = 409
    message = "The ledger refused the transaction."


class SignatureRefused(ApplicationError):
    """The ledger refused a change because the patient's signature does not prove they approved it; `code` is the
    contract's reason (chaincode.webauthn): signature_required, challenge_mismatch, unknown_key, replayed..."""

    code = "signature_invalid"
    status = 403
    message = "The ledger refused the signature."


# The ledger's errors are members of the family: they carry a code, a status and a safe message of their
# own (ledger.errors), and the API renders them like the rest. LedgerUnavailableError is the name the apps
# use for the transient one.
LedgerUnavailableError = LedgerUnavailable


def error_headers(error: ApplicationError | LedgerError) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)} if error.retry_after else {}
