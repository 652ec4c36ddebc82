import pytest
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions

from health_platform.api import exception_handler
from health_platform.errors import PayloadTooLarge, ValidationFailed


def _render(error):
    response = exception_handler(error, {"view": None})
    return response.status_code, response.data


def test_application_errors_render_code_message_and_detail():
    status, body = _render(ValidationFailed("bad bundle", code="not_a_bundle", detail={"field": "resourceType"}))
    assert status == 400
    assert body == {"code": "not_a_bundle", "message": "bad bundle", "detail": {"field": "resourceType"}}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (exceptions.NotAuthenticated(), 401, "not_authenticated"),
        (exceptions.AuthenticationFailed(), 401, "authentication_failed"),
        (exceptions.PermissionDenied(), 403, "permission_denied"),
        (Http404(), 404, "not_found"),
        (exceptions.MethodNotAllowed("PATCH"), 405, "method_not_allowed"),
        (exceptions.ParseError(), 400, "malformed_request"),
        (exceptions.UnsupportedMediaType("text/csv"), 415, "unsupported_media_type"),
        (exceptions.Throttled(wait=3), 429, "throttled"),
        (RequestDataTooBig(), 413, "payload_too_large"),
        (PayloadTooLarge(), 413, "payload_too_large"),
    ],
)
def test_framework_errors_get_a_stable_code(error, status, code):
    rendered_status, body = _render(error)
    assert rendered_status == status
    assert body["code"] == code
    assert set(body) == {"code", "message", "detail"}


def test_unexpected_exceptions_are_left_to_django_as_a_500():
    assert exception_handler(RuntimeError("boom"), {"view": None}) is None


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")
    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    assert b"/api/records/" in schema.content
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn." not in docs.content  # served from the installed sidecar package, not a CDN
