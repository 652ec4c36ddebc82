"""Errors in the shape of the request's part of the site: the API's `{"code", "message", "detail"}` under /api/, a
FHIR OperationOutcome under /fhir/ (the FHIR API, fhir_api), nothing (the portal's page, the caller's) elsewhere.

The middlewares and error handlers that answer before or around a view (request limits, the second factor, the
outage guard, Django's 403/404/500 handlers) ask `error_response_for` and so answer a FHIR client in FHIR too.

An OperationOutcome carries one issue: severity error, `code` from the FHIR issue-type value set (by the HTTP
status), the platform's stable error code in `details.coding` (ERROR_CODE_SYSTEM), the message in `diagnostics`.
Like the API's errors, a message never carries a value sent, health data or a key.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from health_platform.fhir_codes import PLATFORM

FHIR_PATH_PREFIX = "/fhir/"
FHIR_MEDIA_TYPE = "application/fhir+json"
FHIR_CONTENT_TYPE = f"{FHIR_MEDIA_TYPE}; charset=utf-8"
# The platform's error codes (`ApplicationError.code` and the API's other codes) as a code system.
ERROR_CODE_SYSTEM = f"{PLATFORM}/CodeSystem/error"

# http://hl7.org/fhir/ValueSet/issue-type, by the HTTP status that says the same; any other status is "exception".
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-long",
    414: "too-long",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}


def is_fhir_path(path: str) -> bool:
    return path.startswith(FHIR_PATH_PREFIX)


def operation_outcome(*, status: int, code: str, message: str) -> dict[str, Any]:
    """The OperationOutcome of an error answered with `status`, the platform's `code` and `message`."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": ISSUE_TYPES.get(status, "exception"),
                "details": {"coding": [{"system": ERROR_CODE_SYSTEM, "code": code}]},
                "diagnostics": message,
            }
        ],
    }


def fhir_error_response(*, status: int, code: str, message: str) -> HttpResponse:
    return JsonResponse(
        operation_outcome(status=status, code=code, message=message), status=status, content_type=FHIR_CONTENT_TYPE
    )


def error_response_for(
    request: HttpRequest, *, status: int, code: str, message: str, detail: Any = None
) -> HttpResponse | None:
    """The error in the shape of the request's part of the site: JSON under /api/, an OperationOutcome under
    /fhir/; None for the portal, whose page the caller renders."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "message": message, "detail": detail}, status=status)
    if is_fhir_path(request.path):
        return fhir_error_response(status=status, code=code, message=message)
    return None


def path_kind(request: HttpRequest) -> str:
    """The part of the site, for logs (never the path itself: paths carry ids)."""
    if request.path.startswith("/api/"):
        return "api"
    return "fhir" if is_fhir_path(request.path) else "portal"
