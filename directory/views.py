"""The custodian's directory pages (/directory/) and the enrolment pages anyone with a link uses (/enrol/).

Server-rendered, every action a plain form POST. Writes go through directory.services. The enrolment pages
never show health data nor the patient's identifier, send no referrer to other sites (the token is in their
URL), and answer a link that cannot be used with a page naming a stable code.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import structlog
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from directory.access import user_may_manage_directory
from directory.forms import (
    ClinicianInviteForm,
    EnrolCodeForm,
    EnrolForm,
    InvitationIssueForm,
    ModelStewardInviteForm,
    OrganisationAddForm,
)
from directory.models import PatientInvitation
from directory.selectors import directory_entries, invitation_get, invitations_recent
from directory.services import (
    InvitationRefused,
    directory_clinician_invite,
    directory_grantee_set_active,
    directory_model_steward_invite,
    directory_organisation_add,
    directory_second_factor_reset,
    invitation_check,
    patient_enrol,
    patient_invitation_issue,
    patient_invitation_reissue,
    patient_invitation_revoke,
    staff_password_set_check,
    token_normalise,
)
from health_platform.errors import ApplicationError, ValidationFailed
from health_platform.models import Organisation
from health_platform.portal import refused

log = structlog.get_logger(__name__)

T = TypeVar("T")


def custodian_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and a custodian; anyone else is refused (403) whatever the URL names."""

    @login_required
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_may_manage_directory(request.user):
            return refused(request, "This page is for custodians.", status=403, base="base.html", panel=False)
        return view(request, *args, **kwargs)

    return checked


def _on_form(form: Any, service: Callable[..., T], **arguments: Any) -> T | None:
    """The service's result, or None when it refuses: its message is then on the form, on the field a
    ValidationFailed names, else above the form."""
    try:
        return service(**arguments)
    except ValidationFailed as error:
        form.add_service_error(error)
    except ApplicationError as error:
        form.add_error(None, error.message)
    return None


# --- the grantee directory ------------------------------------------------------------------------------------


@require_GET
@custodian_view
def home(request: HttpRequest) -> HttpResponse:
    return _directory_page(request)


@require_POST
@custodian_view
def organisation_add(request: HttpRequest) -> HttpResponse:
    form = OrganisationAddForm(request.POST)
    if form.is_valid():
        organisation = _on_form(form, directory_organisation_add, actor=request.user, **form.cleaned_data)
        if organisation is not None:
            messages.success(request, f"{organisation.name} added to the directory and registered on the ledger.")
            return redirect("directory:home")
    return _directory_page(request, organisation_form=form, status=400)


@require_POST
@custodian_view
def clinician_add(request: HttpRequest) -> HttpResponse:
    form = ClinicianInviteForm(request.POST, organisations=Organisation.objects.all())
    if form.is_valid():
        data = form.cleaned_data
        profile = _on_form(
            form,
            directory_clinician_invite,
            actor=request.user,
            username=data["username"],
            display_name=data["display_name"],
            email=data["email"],
            organisation_slug=data["organisation"],
            base_url=request.build_absolute_uri("/"),
        )
        if profile is not None:
            messages.success(request, f"{profile.display_name} added; an e-mail invites them to choose a password.")
            return redirect("directory:home")
    return _directory_page(request, clinician_form=form, status=400)


@require_POST
@custodian_view
def model_steward_add(request: HttpRequest) -> HttpResponse:
    """A model steward's account (issue 18): staff, not a grantee, so not in the directory's table."""
    form = ModelStewardInviteForm(request.POST)
    if form.is_valid():
        base_url = request.build_absolute_uri("/")
        steward = _on_form(
            form, directory_model_steward_invite, actor=request.user, base_url=base_url, **form.cleaned_data
        )
        if steward is not None:
            messages.success(request, f"Model steward {steward.get_username()} added; an e-mail invites them.")
            return redirect("directory:home")
    return _directory_page(request, steward_form=form, status=400)


def _refused_in_directory(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    back = (reverse("directory:home"), "Back to the directory")
    return refused(request, error.message, status=error.status, base="base.html", panel=False, back=back)


def _grantee_status(active: bool) -> Callable[..., HttpResponse]:
    @require_POST
    @custodian_view
    def change(request: HttpRequest, grantee_id: str) -> HttpResponse:
        try:
            status = directory_grantee_set_active(actor=request.user, grantee_id=grantee_id, active=active)
        except ApplicationError as error:
            return _refused_in_directory(request, error)
        where = f" in block {status.block_number}" if status.block_number is not None else ""
        verb = "reactivated" if active else "deactivated"
        messages.success(request, f"{grantee_id} {verb} on the ledger{where}.")
        return redirect("directory:home")

    change.__name__ = "reactivate" if active else "deactivate"
    return change


deactivate = _grantee_status(False)
reactivate = _grantee_status(True)


@require_POST
@custodian_view
def second_factor_reset(request: HttpRequest, grantee_id: str) -> HttpResponse:
    """A clinician lost their phone or passkey: their second factor is removed; they enrol a new one."""
    try:
        profile = directory_second_factor_reset(actor=request.user, grantee_id=grantee_id)
    except ApplicationError as error:
        return _refused_in_directory(request, error)
    messages.success(
        request,
        f"{profile.display_name}'s second factor was reset and they were signed out; they enrol a new one at their "
        "next sign-in (an e-mail tells them).",
    )
    return redirect("directory:home")


def _directory_page(
    request: HttpRequest,
    *,
    organisation_form: OrganisationAddForm | None = None,
    clinician_form: ClinicianInviteForm | None = None,
    steward_form: ModelStewardInviteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    organisations = Organisation.objects.all()
    context = {
        "entries": directory_entries(),
        "organisation_form": organisation_form or OrganisationAddForm(),
        "clinician_form": clinician_form or ClinicianInviteForm(organisations=organisations),
        "steward_form": steward_form or ModelStewardInviteForm(),
    }
    return render(request, "directory/home.html", context, status=status)


# --- patient invitations --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@custodian_view
def invitations(request: HttpRequest) -> HttpResponse:
    """GET: the latest invitations and the form. POST: invite; the page then shows the desk code once (when no
    e-mail was given)."""
    form = InvitationIssueForm(request.POST or None)
    issued = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                issued = patient_invitation_issue(
                    actor=request.user, base_url=request.build_absolute_uri("/"), **form.cleaned_data
                )
            except ValidationFailed as error:
                form.add_service_error(error)
            except ApplicationError as error:
                form.add_error(None, error.message)
                status = error.status
            else:
                status = 201
                form = InvitationIssueForm()
    return _invitations_page(request, form=form, issued=issued, status=status)


def _invitation_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view is given the invitation its URL names; an unknown one is answered 404."""

    @wraps(view)
    def found(request: HttpRequest, invitation_id: str) -> HttpResponse:
        invitation = invitation_get(invitation_id=invitation_id)
        if invitation is None:
            return _no_such_invitation(request)
        return view(request, invitation)

    return found


@require_POST
@custodian_view
@_invitation_view
def invitation_revoke(request: HttpRequest, invitation: PatientInvitation) -> HttpResponse:
    patient_invitation_revoke(actor=request.user, invitation=invitation)
    messages.success(request, "Invitation revoked: its link and code no longer work.")
    return redirect("directory:invitations")


@require_POST
@custodian_view
@_invitation_view
def invitation_reissue(request: HttpRequest, invitation: PatientInvitation) -> HttpResponse:
    email = request.POST.get("email", "")
    try:
        issued = patient_invitation_reissue(
            actor=request.user,
            invitation=invitation,
            email=email if isinstance(email, str) else "",
            base_url=request.build_absolute_uri("/"),
        )
    except ApplicationError as error:
        return _invitations_page(
            request, form=InvitationIssueForm(), issued=None, status=error.status, error=error.message
        )
    return _invitations_page(request, form=InvitationIssueForm(), issued=issued, status=201)


def _invitations_page(request: HttpRequest, *, form, issued, status: int, error: str | None = None) -> HttpResponse:
    context = {"form": form, "issued": issued, "invitations": invitations_recent(), "error": error}
    return render(request, "directory/invitations.html", context, status=status)


def _no_such_invitation(request: HttpRequest) -> HttpResponse:
    return refused(
        request,
        "There is no such invitation.",
        status=404,
        base="base.html",
        panel=False,
        back=(reverse("directory:invitations"), "Back to the invitations"),
    )


# --- enrolment (anyone holding a link or code) ---------------------------------------------------------------


def _no_referrer(response: HttpResponse) -> HttpResponse:
    """Never cached, and the link's URL never sent to another site: the referrer policy is at most same-origin
    (no-referrer would make the browser send `Origin: null` with the form, which Django's CSRF check refuses)."""
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store"
    return response


def _enrol_refused(request: HttpRequest, error: InvitationRefused) -> HttpResponse:
    log.info("enrolment_refused", code=error.code)
    return _no_referrer(render(request, "directory/enrol_refused.html", {"error": error}, status=error.status))


@require_http_methods(["GET", "POST"])
def enrol_start(request: HttpRequest) -> HttpResponse:
    """Type the code handed over at the desk; a valid one leads to the account form."""
    form = EnrolCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = token_normalise(form.cleaned_data["code"])
        try:
            invitation_check(token_text=token)
        except InvitationRefused as error:
            return _enrol_refused(request, error)
        return redirect("enrol:link", token=token)
    return _no_referrer(
        render(request, "directory/enrol_start.html", {"form": form}, status=400 if request.method == "POST" else 200)
    )


@require_http_methods(["GET", "POST"])
def enrol_link(request: HttpRequest, token: str) -> HttpResponse:
    """The invitation's page: choose a username and password; the account is created linked to the records."""
    try:
        invitation_check(token_text=token)
    except InvitationRefused as error:
        return _enrol_refused(request, error)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = patient_enrol(token_text=token, **form.cleaned_data)
        except InvitationRefused as error:
            return _enrol_refused(request, error)
        except ValidationFailed as error:
            form.add_service_error(error)
        else:
            messages.success(
                request,
                f"Your account {user.get_username()} is ready. Sign in to see your records, then add your passkey: "
                "it signs your consents.",
            )
            return redirect("login")
    status = 400 if request.method == "POST" else 200
    return _no_referrer(render(request, "directory/enrol.html", {"form": form}, status=status))


@require_http_methods(["GET", "POST"])
def enrol_staff(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """A clinician's welcome link: choose a password (the link stops working once it is set)."""
    try:
        user = staff_password_set_check(uidb64=uidb64, token=token)
    except InvitationRefused as error:
        return _enrol_refused(request, error)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        log.info("staff_password_set", user_id=user.pk)
        messages.success(request, f"Your password is set. Sign in as {user.get_username()}.")
        return redirect("login")
    status = 400 if request.method == "POST" else 200
    return _no_referrer(
        render(request, "directory/enrol_staff.html", {"form": form, "username": user.get_username()}, status=status)
    )
