"""The project's URLs plus routes that fail, for the error-page tests (ROOT_URLCONF of those tests only)."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path

from health_platform.urls import handler403, handler404, handler500
from health_platform.urls import urlpatterns as project_urlpatterns

__all__ = ["handler403", "handler404", "handler500", "urlpatterns"]


def fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a fault the view did not expect")


def refuses(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


urlpatterns = [
    path("portal-fails/", fails),
    path("api/fails/", fails),
    path("portal-refuses/", refuses),
    path("api/refuses/", refuses),
    *project_urlpatterns,
]
