"""Limits on what a request may be, answered in the shape of its kind: the API's `{"code", "message", "detail"}`
JSON under /api/, the portal's page elsewhere.

The web server (health_platform/gunicorn_config.py) lets through request lines of up to 8190 bytes, its
largest limit, so that the platform answers a URL that is merely too long itself, here; only a longer line
is refused by gunicorn, whose answer then carries a code too (gunicorn_config.JsonErrorWorker).
"""

from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.urls import reverse

log = structlog.get_logger(__name__)

URI_TOO_LONG_MESSAGE = "The URL is longer than the platform accepts."


class RequestUriBounded:
    """A URL (path and query string, as sent) longer than settings.REQUEST_URI_MAX_BYTES: 414 uri_too_long.

    Near the top of the middleware: nothing else (no session, no database) is spent on such a request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        limit = settings.REQUEST_URI_MAX_BYTES
        if len(_uri_as_sent(request)) > limit:
            log.info("request_uri_too_long", path_kind=_path_kind(request), max_bytes=limit)
            return uri_too_long(request, limit)
        return self.get_response(request)


def uri_too_long(request: HttpRequest, limit: int) -> HttpResponse:
    if request.path.startswith("/api/"):
        body = {"code": "uri_too_long", "message": URI_TOO_LONG_MESSAGE, "detail": {"max_bytes": limit}}
        return JsonResponse(body, status=414)
    context = {
        "base_template": "base.html",
        "title": "Address too long",
        "message": f"{URI_TOO_LONG_MESSAGE} Go back and try a shorter search.",
        "back_url": reverse("home"),
        "back_label": "Go to your start page",
    }
    return render(request, "refused.html", context, status=414)


def _uri_as_sent(request: HttpRequest) -> str:
    """The request target as the client sent it (gunicorn's RAW_URI), else as Django rebuilds it."""
    return str(request.META.get("RAW_URI") or request.get_full_path())


def _path_kind(request: HttpRequest) -> str:
    """The part of the site (never the path: it carries ids, and here the part that is too long)."""
    return "api" if request.path.startswith("/api/") else "portal"
