"""DRF glue: the one exception handler that renders every error as {"code", "message", "detail"}."""

from typing import Any

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from health_platform.errors import ApplicationError

log = structlog.get_logger(__name__)

_DRF_CODES: dict[type[drf_exceptions.APIException], str] = {
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ValidationError: "validation_failed",
}


def error_response(error: ApplicationError) -> Response:
    return Response(error.as_dict(), status=error.status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render application, DRF and Django errors in one shape with a stable code."""
    if isinstance(exc, ApplicationError):
        set_rollback()
        log.info("api_error", code=exc.code, status=exc.status, view=_view_name(context))
        return error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {
                "code": "payload_too_large",
                "message": "The payload is larger than the configured limit.",
                "detail": None,
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if not isinstance(exc, drf_exceptions.APIException):
        return None

    set_rollback()
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "request_failed")
    if isinstance(exc, drf_exceptions.ValidationError):
        message, detail = "The input is not valid.", exc.detail
    else:
        message, detail = str(exc.detail), None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    return Response({"code": code, "message": message, "detail": detail}, status=exc.status_code, headers=headers)


def _view_name(context: dict[str, Any]) -> str:
    view = context.get("view")
    return type(view).__name__ if view is not None else ""
