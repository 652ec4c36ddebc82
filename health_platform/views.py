"""Portal entry (the home page sends each user to their role's starting page) and the error pages."""

import structlog
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET

from health_platform.fhir_outcomes import error_response_for, path_kind
from health_platform.roles import Role, user_roles


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Patients land on their consent dashboard, clinicians on the consents naming them, custodians on the
    upload page and its history, auditors on the state of the access log, model stewards on their training runs;
    anyone with several roles or none gets the page of links."""
    roles = user_roles(request.user)
    if roles == {Role.PATIENT}:
        return redirect("consent:dashboard")
    if roles == {Role.CLINICIAN}:
        return redirect("consent:granted-to-me")
    if roles == {Role.CUSTODIAN}:
        return redirect("records:ingest")
    if roles == {Role.AUDITOR}:
        return redirect("audit:overview")
    if roles == {Role.MODEL_STEWARD}:
        return redirect("training:list")
    return render(request, "home.html", {"role_names": sorted(role.value for role in roles)})


log = structlog.get_logger(__name__)

ERROR_PAGES: dict[int, tuple[str, str]] = {
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    500: ("server_error", "The server could not answer this request."),
}


def _api_error(request: HttpRequest, status: int) -> HttpResponse | None:
    """The API's `{"code", "message", "detail"}` for an error under /api/, an OperationOutcome under /fhir/; None
    for the portal."""
    code, message = ERROR_PAGES[status]
    return error_response_for(request, status=status, code=code, message=message)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL no route matches: the API's JSON error under /api/, the portal's page elsewhere.

    An API client that sends a malformed id (one the route's pattern refuses) gets the same
    `{"code": "not_found", ...}` as for an id that does not exist, never an HTML page. The portal's page
    has the site's navigation and sign-out, and never repeats the path asked for (it may carry ids).
    """
    return _api_error(request, 404) or render(request, "404.html", {"code": "not_found"}, status=404)


def forbidden(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403 for a PermissionDenied no view answered itself: JSON under /api/, the portal's page elsewhere."""
    return _api_error(request, 403) or render(request, "403.html", {"code": "permission_denied"}, status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON under /api/, elsewhere a page in the portal's look that needs neither the database nor the
    template context processors (either may be what broke).

    The page is rendered from a plain context; its sign-out form carries a CSRF token when one can be had
    from the request's cookie (no database involved), else it offers the sign-in page instead.
    """
    log.error("server_error", path_kind=path_kind(request))
    api = _api_error(request, 500)
    if api is not None:
        return api
    context: dict[str, str] = {"code": "server_error"}
    try:
        context["csrf_token"] = get_token(request)
    except Exception:  # a broken request still gets its page, without the sign-out form
        context["csrf_token"] = ""
    try:
        context["home_url"], context["logout_url"] = reverse("home"), reverse("logout")
        context["login_url"] = reverse("login")
    except NoReverseMatch:  # the URL configuration itself may be what broke
        context.update(home_url="/", logout_url="/accounts/logout/", login_url="/accounts/login/")
    try:
        body = loader.get_template("500.html").render(context)
    except Exception:  # the last resort must answer
        body = "<!doctype html><title>Server error</title><h1>Something went wrong</h1><p>code: server_error</p>"
    return HttpResponse(body, status=500, content_type="text/html; charset=utf-8")
