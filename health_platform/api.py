"""DRF glue: the one exception handler that renders every error as {"code", "message", "detail"}, and the list
every viewset of the apps answers the same way."""

from collections.abc import Callable
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import set_rollback

from health_platform.errors import ApplicationError, PermissionDenied, error_headers
from health_platform.roles import Role, user_has_role
from ledger import LedgerError

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


class VisibleListViewSet(viewsets.GenericViewSet):
    """A viewset whose queryset and list are the objects `visible_to(user)` (the app's selector), filtered,
    paginated and written by `list_serializer`. The schema generator (no user) sees an empty queryset."""

    model: type[Model]
    list_serializer: type[BaseSerializer]
    detail_serializer: type[BaseSerializer]

    def visible_to(self, user: Any) -> QuerySet[Any]:
        raise NotImplementedError

    def visible_one(self, user: Any, pk: str | None) -> Any:
        """The object a read names, through the app's selector, which refuses what `user` may not see (its
        NotFound is the read's 404). The read writes it with `detail_serializer` and `detail_context`."""
        raise NotImplementedError

    def detail_context(self, request: Request, obj: Any) -> dict[str, Any]:
        """What `detail_serializer` needs beside the object (its progress, its decrypted content...)."""
        return {}

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):
            return self.model._default_manager.none()
        return self.visible_to(self.request.user)

    def list(self, request: Request) -> Response:
        objects = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(objects)
        if page is None:
            return Response(self.list_serializer(objects, many=True).data)
        return self.get_paginated_response(self.list_serializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        found = self.visible_one(request.user, pk)
        return Response(self.detail_serializer(found, context=self.detail_context(request, found)).data)


def permission(check: Callable[[Any], bool], message: str) -> type[BasePermission]:
    """A DRF permission class that admits the users `check` (an access.py rule) admits; others get `message`."""

    class Permission(BasePermission):
        def has_permission(self, request: Any, view: Any) -> bool:
            return check(request.user)

    Permission.message = message
    Permission.__name__ = Permission.__qualname__ = f"May_{check.__name__}"
    return Permission


def role_input(request: Request, *, role: Role, refusal: str, serializer: type[BaseSerializer]) -> dict[str, Any]:
    """The validated body of a POST only `role` may send (an auditor's verdict, a clinician's declaration): another
    role is PermissionDenied with `refusal`, a body `serializer` refuses is a validation error (400)."""
    if not user_has_role(request.user, role):
        raise PermissionDenied(refusal)
    payload = serializer(data=request.data)
    payload.is_valid(raise_exception=True)
    return dict(payload.validated_data)


def error_response(error: ApplicationError | LedgerError) -> Response:
    return Response(error.as_dict(), status=error.status, headers=error_headers(error))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render application (ledger included), DRF and Django errors in one shape with a stable code."""
    if isinstance(exc, ApplicationError | LedgerError):
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
    if isinstance(exc, OperationalError):
        # The database is locked past its timeout or unreachable: say so, rather than a bare 500 page.
        # The view's transaction was rolled back; the client may retry.
        set_rollback()
        log.warning("database_unavailable", view=_view_name(context))
        return Response(
            {"code": "database_unavailable", "message": "The database did not answer; try again.", "detail": None},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
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


def _has_parameter(operation: dict[str, Any], location: str, name: str | None = None) -> bool:
    return any(
        parameter.get("in") == location and (name is None or parameter.get("name") == name)
        for parameter in operation.get("parameters", [])
    )


def _any_operation(operation: dict[str, Any]) -> bool:
    return True


def _takes_input(operation: dict[str, Any]) -> bool:
    return "requestBody" in operation or _has_parameter(operation, "query")


def _takes_a_body(operation: dict[str, Any]) -> bool:
    return "requestBody" in operation


def _names_an_object_or_page(operation: dict[str, Any]) -> bool:
    return _has_parameter(operation, "path") or _has_parameter(operation, "query", "page")


# Errors the exception handler above answers on any operation, whatever the view declares: (status, which
# operations, what it means). Views document their own codes; these fill the gaps.
_COMMON_ERRORS: tuple[tuple[str, Callable[[dict[str, Any]], bool], str], ...] = (
    ("400", _takes_input, "validation_failed, malformed_request or json_too_deep: the input is not valid"),
    ("401", _any_operation, "not_authenticated or authentication_failed"),
    ("403", _any_operation, "permission_denied: not allowed for this role (or a CSRF failure on a session)"),
    ("404", _names_an_object_or_page, "not_found"),
    ("413", _takes_a_body, "payload_too_large"),
    ("415", _takes_a_body, "unsupported_media_type"),
    ("503", _any_operation, "database_unavailable or ledger_unavailable: nothing was changed; try again"),
)
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def error_responses_documented(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the error shape on every operation.

    Every error response gets the `{"code", "message", "detail"}` body, and each operation lists the
    errors `exception_handler` answers for it (bad input, no or bad credentials, a refused role, an id
    or page that does not exist, a body too large or of the wrong type, a backend that did not answer),
    so a client generated from the schema knows every status it can receive.
    """
    if "Error" not in result.get("components", {}).get("schemas", {}):
        return result
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status_code, applies, description in _COMMON_ERRORS:
                if status_code not in responses and applies(operation):
                    responses[status_code] = {"description": description}
            for status_code, response in responses.items():
                if status_code[:1] in ("4", "5") and not response.get("content"):
                    response["content"] = _ERROR_CONTENT
    return result
