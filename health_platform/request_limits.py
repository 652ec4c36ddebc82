"""Limits on what a request may be, answered in the shape of its kind: the API's `{"code", "message", "detail"}`
JSON under /api/, the portal's page elsewhere.

URLs. The web server (health_platform/gunicorn_config.py) lets through request lines of up to 8190 bytes, its
largest limit, so that the platform answers a URL that is merely too long itself, here (414 uri_too_long);
only a longer line is refused by gunicorn, whose answer then carries a code too (JsonErrorWorker).

Bodies sent without a length. Django reads a request's body by its Content-Length only: a body sent with
`Transfer-Encoding: chunked` (which gunicorn decodes and ends, `wsgi.input_terminated`) was read as empty, and
the API answered a 50 MB upload 400 instead of 413. ChunkedBodyRead, around the WSGI application
(health_platform/wsgi.py), reads such a body first, up to REQUEST_BODY_MAX_BYTES (the largest body any
endpoint takes), into a spooled file, and hands it on with its length: from there each endpoint bounds it
exactly as a body that came with a Content-Length (ingest: 413 payload_too_large past INGEST_MAX_BYTES...).
A body longer than that is not read further: RequestLimits answers 413 payload_too_large.
"""

import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse

from health_platform.fhir_outcomes import error_response_for, path_kind

log = structlog.get_logger(__name__)

URI_TOO_LONG_MESSAGE = "The URL is longer than the platform accepts."
BODY_TOO_LARGE_MESSAGE = "The payload is larger than the configured limit."
BODY_TOO_LARGE = "health_platform.body_too_large"  # the WSGI environ's mark: the limit the body went past
SPOOLED_IN_MEMORY_BYTES = 1024 * 1024  # a chunked body past this is kept in a temporary file
READ_BYTES = 64 * 1024


class RequestLimits:
    """Near the top of the middleware, so that nothing else (no session, no database) is spent on the request:
    - a URL (path and query string, as sent) longer than settings.REQUEST_URI_MAX_BYTES: 414 uri_too_long;
    - a body sent without a length that went past REQUEST_BODY_MAX_BYTES (ChunkedBodyRead): 413 payload_too_large.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        limit = settings.REQUEST_URI_MAX_BYTES
        if len(_uri_as_sent(request)) > limit:
            log.info("request_uri_too_long", path_kind=path_kind(request), max_bytes=limit)
            return _refusal(request, 414, "uri_too_long", URI_TOO_LONG_MESSAGE, limit, "Address too long")
        body_limit = request.META.get(BODY_TOO_LARGE)
        if body_limit is not None:
            log.info("request_body_too_large", path_kind=path_kind(request), max_bytes=body_limit)
            return _refusal(request, 413, "payload_too_large", BODY_TOO_LARGE_MESSAGE, body_limit, "Too large")
        return self.get_response(request)


def _refusal(request: HttpRequest, status: int, code: str, message: str, limit: int, title: str) -> HttpResponse:
    answer = error_response_for(request, status=status, code=code, message=message, detail={"max_bytes": limit})
    if answer is not None:
        return answer
    context = {
        "base_template": "base.html",
        "title": title,
        "message": message,
        "back_url": reverse("home"),
        "back_label": "Go to your start page",
    }
    return render(request, "refused.html", context, status=status)


class ChunkedBodyRead:
    """WSGI middleware: a request body sent without a length is read here and handed on with one (see above)."""

    def __init__(self, application: Callable[..., Iterable[bytes]]):
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _body_without_length(environ):
            return self.application(environ, start_response)
        limit = settings.REQUEST_BODY_MAX_BYTES
        body = tempfile.SpooledTemporaryFile(max_size=SPOOLED_IN_MEMORY_BYTES)  # noqa: SIM115 (closed with the answer)
        read = 0
        while read <= limit:
            chunk = environ["wsgi.input"].read(min(READ_BYTES, limit + 1 - read))
            if not chunk:
                break
            body.write(chunk)
            read += len(chunk)
        if read > limit:  # the rest is left unread: the answer is 413 whatever the endpoint
            body.close()
            body, read = tempfile.SpooledTemporaryFile(), 0  # noqa: SIM115
            environ[BODY_TOO_LARGE] = limit
        body.seek(0)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = body, str(read)
        return _ClosingWith(self.application(environ, start_response), body)


def _body_without_length(environ: dict[str, Any]) -> bool:
    """A chunked body the server has ended for us (gunicorn: wsgi.input_terminated); gunicorn refuses a request
    that gives both a Content-Length and chunked."""
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return chunked and not environ.get("CONTENT_LENGTH") and bool(environ.get("wsgi.input_terminated"))


class _ClosingWith:
    """The application's answer, which also closes `resource` when the server closes the answer."""

    def __init__(self, answer: Iterable[bytes], resource: io.IOBase | Any):
        self.answer, self.resource = answer, resource

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.answer)

    def close(self) -> None:
        try:
            close = getattr(self.answer, "close", None)
            if close is not None:
                close()
        finally:
            self.resource.close()


def _uri_as_sent(request: HttpRequest) -> str:
    """The request target as the client sent it (gunicorn's RAW_URI), else as Django rebuilds it."""
    return str(request.META.get("RAW_URI") or request.get_full_path())
