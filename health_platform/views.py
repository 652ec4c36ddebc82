"""Portal entry: the home page sends each user to their role's starting page."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from health_platform.roles import Role, user_roles


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Patients land on their consent dashboard, clinicians on the consents naming them; anyone with
    several roles or none gets the page of links."""
    roles = user_roles(request.user)
    if roles == {Role.PATIENT}:
        return redirect("consent:dashboard")
    if roles == {Role.CLINICIAN}:
        return redirect("consent:granted-to-me")
    return render(request, "home.html", {"role_names": sorted(role.value for role in roles)})
