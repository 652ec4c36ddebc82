"""The care portal: a clinician's reads for treatment and emergency declarations, the auditors' review queue, and the
patient's emergency-access page (what was opened, and what they forbid)."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from care import emergencies
from care.services import TreatmentRead, treatment_records_read
from chaincode.vocabulary import CATEGORIES, EMERGENCY_REASONS, EMERGENCY_VERDICTS, REFUSAL_REASONS
from health_platform.errors import ApplicationError, NotFound, PermissionDenied, ValidationFailed
from health_platform.portal import refused, verdict_posted
from health_platform.roles import Role, user_has_role
from records.selectors import patient_of

BASE = "consent/base.html"
AUDIT_BASE = "audit/base.html"


def _read_page(request: HttpRequest, read: TreatmentRead, back: tuple[str, str]) -> HttpResponse:
    return render(
        request,
        "care/patient_records.html",
        {
            "read": read,
            "category_label": CATEGORIES[read.category],
            "reasons": REFUSAL_REASONS,
            "status_code": "admitted" if read.admitted else "refused",
            "back": back,
        },
        status=200 if read.admitted or not read.records else 403,
    )


@login_required
@require_GET
def patient_records(request: HttpRequest, pseudonym: str, category: str) -> HttpResponse:
    """Gate, log and show the patient's records of `category`; refusals with their reasons, logged too.

    A ledger that does not answer reaches the OutageMiddleware: 503, nothing shown."""
    back = (reverse("consent:granted-to-me"), "Consents granted to me")
    try:
        read = treatment_records_read(clinician=request.user, patient_pseudonym=pseudonym, category=category)
    except PermissionDenied as denied:
        return refused(request, denied.message, status=403, base=BASE, back=back)
    except (NotFound, ValidationFailed):
        return refused(request, "No such patient has consented to you.", status=404, base=BASE, back=back)
    return _read_page(request, read, back)


@login_required
@require_http_methods(["GET", "POST"])
def emergencies_page(request: HttpRequest) -> HttpResponse:
    """A clinician's emergency declarations, and the form to declare one (break-the-glass)."""
    if not user_has_role(request.user, Role.CLINICIAN):
        return refused(request, "Emergency access is for clinicians.", status=403, base=BASE)
    form: dict[str, Any] = {"identifier": "", "reason": "", "justification": ""}
    error: ApplicationError | None = None
    if request.method == "POST":
        form = {name: request.POST.get(name, "") for name in form}
        try:
            declaration = emergencies.emergency_declare(clinician=request.user, **form)
        except (ValidationFailed, NotFound, PermissionDenied) as refusal:
            error = refusal
        else:
            messages.success(
                request, "Emergency declared on the ledger. The patient is told; an auditor will review it."
            )
            return redirect("care:emergency", declaration_id=declaration.id)
    return render(
        request,
        "care/emergencies.html",
        {
            "declarations": emergencies.emergencies_visible_to(user=request.user)[:100],
            "reasons": EMERGENCY_REASONS,
            "form": form,
            "error": error,
            "hours": emergencies.emergency_duration().total_seconds() / 3600,
        },
        status=400 if isinstance(error, ValidationFailed) else 404 if error else 200,
    )


@login_required
@require_GET
def emergency_detail(request: HttpRequest, declaration_id: str) -> HttpResponse:
    """One declaration: for its clinician, the categories to read while it lasts; for an auditor, the justification
    and the review form (or the review)."""
    auditor = user_has_role(request.user, Role.AUDITOR)
    base = AUDIT_BASE if auditor else BASE
    if not (auditor or user_has_role(request.user, Role.CLINICIAN)):
        return refused(request, "Emergency declarations are for clinicians and auditors.", status=403, base=base)
    try:
        declaration = emergencies.emergency_visible(user=request.user, declaration_id=declaration_id)
    except NotFound:
        return refused(request, "No such emergency declaration.", status=404, base=base)
    return render(request, "care/emergency_detail.html", _detail_context(request, declaration, auditor=auditor))


def _detail_context(request: HttpRequest, declaration: Any, *, auditor: bool, **extra: Any) -> dict[str, Any]:
    return {
        "declaration": declaration,
        "auditor": auditor,
        "active": emergencies.is_active(declaration),
        "justification": emergencies.justification_open(declaration),
        "note": emergencies.note_open(declaration) if auditor else "",
        "reason_label": EMERGENCY_REASONS.get(declaration.reason, declaration.reason),
        "verdicts": EMERGENCY_VERDICTS,
        "categories": CATEGORIES,
        "base_template": AUDIT_BASE if auditor else BASE,
        **extra,
    }


@login_required
@require_POST
def emergency_review(request: HttpRequest, declaration_id: str) -> HttpResponse:
    def again(error: ValidationFailed) -> HttpResponse:
        declaration = emergencies.emergency_visible(user=request.user, declaration_id=declaration_id)
        context = _detail_context(request, declaration, auditor=True, error=error, posted=request.POST)
        return render(request, "care/emergency_detail.html", context, status=400)

    return verdict_posted(
        request,
        judge=lambda verdict, note: emergencies.emergency_review(
            auditor=request.user, declaration_id=declaration_id, verdict=verdict, note=note
        ),
        again=again,
        base=AUDIT_BASE,
        done=reverse("care:review-queue"),
        message="Review recorded on the ledger.",
    )


@login_required
@require_GET
def emergency_records(request: HttpRequest, declaration_id: str, category: str) -> HttpResponse:
    """Gate, log and show the declaration's patient's records of `category` (its clinician only, while it lasts)."""
    back = (reverse("care:emergency", kwargs={"declaration_id": declaration_id}), "The emergency declaration")
    try:
        read = emergencies.emergency_records_read(
            clinician=request.user, declaration_id=declaration_id, category=category
        )
    except PermissionDenied as denied:
        return refused(request, denied.message, status=403, base=BASE, back=back)
    except (NotFound, ValidationFailed):
        return refused(request, "No such emergency declaration of yours.", status=404, base=BASE)
    return _read_page(request, read, back)


@login_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    """Every emergency not reviewed yet, oldest first, and the latest reviewed ones."""
    if not user_has_role(request.user, Role.AUDITOR):
        return refused(request, "The review queue is for auditors.", status=403, base=AUDIT_BASE)
    reviewed = emergencies.emergencies_visible_to(user=request.user).exclude(verdict="").order_by("-judged_at")
    return render(
        request,
        "care/review_queue.html",
        {
            "waiting": emergencies.emergency_review_queue()[:200],
            "reviewed": reviewed[:50],
            "reasons": EMERGENCY_REASONS,
            "verdicts": EMERGENCY_VERDICTS,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def my_emergency_access(request: HttpRequest) -> HttpResponse:
    """The patient's page: every emergency declared for them (who, why, until when, the review), and the data
    categories they forbid emergency access to."""
    if patient_of(request.user) is None:
        return refused(request, "This page is for patients.", status=403, base=BASE)
    if request.method == "POST":
        chosen = request.POST.getlist("categories")
        try:
            emergencies.emergency_refusals_set(user=request.user, categories=chosen)
        except ValidationFailed:
            return refused(request, "Choose data categories from the list.", status=400, base=BASE)
        messages.success(request, "Saved on the ledger: the gate honours it from now on.")
        return redirect("care:my-emergency-access")
    refusals = emergencies.emergency_refusals_of(user=request.user)
    return render(
        request,
        "care/my_emergency_access.html",
        {
            "declarations": emergencies.emergencies_visible_to(user=request.user)[:200],
            "refusals": refusals,
            "categories": CATEGORIES,
            "reasons": EMERGENCY_REASONS,
            "verdicts": EMERGENCY_VERDICTS,
        },
    )
