"""Portal entry: the home page sends each user to their role's starting page."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from health_platform.roles import Role, user_roles


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Patients land on their consent dashboard, clinicians on the consents naming them; anyone with
    several roles or none gets the page of links."""
    roles = user_roles(request.user)
    if roles == {Role.PATIENT}:
        return redirect("consent:dashboard")
    if roles == {Role.CLINICIAN}:
        return redirect("consent:granted-to-me")
    return render(request, "home.html", {"role_names": sorted(role.value for role in roles)})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL no route matches: the API's JSON error under /api/, the portal's page elsewhere.

    An API client that sends a malformed id (one the route's pattern refuses) gets the same
    `{"code": "not_found", ...}` as for an id that does not exist, never an HTML page.
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "message": "Not found.", "detail": None}, status=404)
    return page_not_found(request, exception)
