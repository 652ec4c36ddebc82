"""The consent portal: the patient's dashboard (records, consents, grant, revoke, history) and the
clinician's page of consents naming them.

Server-rendered; htmx only enhances (the history panel and the revoke confirmation load in place),
and every action works without JavaScript. The patient is always the signed-in user's own: no
form or URL carries a patient. Writes go through consent.services, reads through the selectors.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import wraps
from typing import Any

import structlog
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chaincode.vocabulary import CATEGORIES
from consent.access import patient_of
from consent.forms import ConsentGrantForm, GrantedConsentsFilterForm, purpose_codes
from consent.models import Consent
from consent.selectors import (
    consent_get_for_patient,
    consent_history,
    consents_granted_to_filtered,
    consents_of_patient,
    patients_with_consent_in_force_count,
)
from consent.services import consent_grant, consent_revoke
from health_platform.errors import LedgerRejected, PermissionDenied, ValidationFailed
from health_platform.model_catalogue import catalogue, consent_purposes
from health_platform.portal import refused
from health_platform.roles import Role, user_has_role
from health_platform.selectors import grantee_get, grantees_all
from health_platform.wording import label_codes, plain_words
from ledger import ContractRejected, LedgerError
from records.models import Patient
from records.selectors import patient_records_with_integrity

log = structlog.get_logger(__name__)

LEDGER_UNAVAILABLE_MESSAGE = (
    "The ledger is not reachable at the moment, so nothing was changed. Please try again later."
)
HISTORY_UNAVAILABLE_MESSAGE = (
    "The ledger is not reachable at the moment, so the history cannot be shown. Please try again later."
)
LEDGER_REJECTED_MESSAGE = "The ledger refused this change, so nothing was changed. Please try again."


@dataclass(frozen=True)
class ConsentRow:
    """A consent as the portal shows it: names and labels resolved, the period as whole days."""

    consent: Consent
    grantee_name: str
    purposes: list[tuple[str, str, str]]  # code, plain words, code systems (behind a <details>)
    categories: list[tuple[str, str]]
    first_day: date
    last_day: date
    status: str


# --- patient --------------------------------------------------------------------------------------


def patient_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view of the signed-in patient's own: called with their Patient; anyone else is refused (403)."""

    @wraps(view)
    def with_patient(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        patient = patient_of(request.user)
        if patient is None:
            return _forbidden_to_non_patients(request)
        return view(request, patient, *args, **kwargs)

    return with_patient


@login_required
@require_GET
@patient_view
def dashboard(request: HttpRequest, patient: Patient) -> HttpResponse:
    """The patient's records with their integrity, their consents, and the grant form."""
    return _render_dashboard(request, patient=patient, form=ConsentGrantForm(grantees=grantees_all()))


@login_required
@require_POST
@patient_view
def grant(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Grant a consent from the form; on a refusal, the dashboard again with the reason by the field."""
    form = ConsentGrantForm(request.POST, grantees=grantees_all())
    if not form.is_valid():
        return _render_dashboard(request, patient=patient, form=form, status=400)
    valid_from, valid_until = form.period()
    try:
        consent = consent_grant(
            actor=request.user,
            patient=patient,
            grantee_id=form.cleaned_data["grantee"],
            purposes=form.cleaned_data["purposes"],
            categories=form.cleaned_data["categories"],
            valid_from=valid_from,
            valid_until=valid_until,
        )
    except ValidationFailed as error:
        form.add_service_error(error)
        return _render_dashboard(request, patient=patient, form=form, status=400)
    except PermissionDenied:
        return _forbidden(request, "Only the patient a consent concerns can grant it.")
    except (LedgerError, LedgerRejected) as error:
        status, message = _ledger_failure(error, action="grant", user=request.user)
        return _render_dashboard(request, patient=patient, form=form, status=status, error=message)
    return _done(request, consent, "Consent granted. It is", consent.granted_tx_id, consent.granted_block)


@login_required
@require_http_methods(["GET", "POST"])
@patient_view
def revoke(request: HttpRequest, patient: Patient, consent_id: str) -> HttpResponse:
    """GET: the confirmation (a page of its own, or loaded in place by htmx). POST: revoke.

    Any consent id that is not one of the signed-in patient's own consents is answered 404, before
    anything reaches the ledger, whether it belongs to someone else or does not exist: one answer for
    both, so that it never tells that another patient's consent exists.
    """
    consent = consent_get_for_patient(patient=patient, consent_id=consent_id)
    if consent is None:
        return _not_one_of_yours(request)
    row = _consent_rows([consent])[0]
    if request.method == "GET":
        return render(request, "consent/revoke_confirm.html", {"row": row})
    try:
        consent = consent_revoke(actor=request.user, consent=consent)
    except PermissionDenied:
        return _not_one_of_yours(request)
    except (LedgerError, LedgerRejected) as error:
        status, message = _ledger_failure(error, action="revoke", user=request.user)
        return render(request, "consent/revoke_confirm.html", {"row": row, "error": message}, status=status)
    return _done(request, consent, "Consent revoked. The revocation is", consent.revoked_tx_id, consent.revoked_block)


@login_required
@require_GET
@patient_view
def detail(request: HttpRequest, patient: Patient, consent_id: str) -> HttpResponse:
    """One consent and its history as the ledger records it (each change: transaction, block, time).

    The dashboard loads this page's #consent-history section in place with htmx. Another patient's consent
    is answered as one that does not exist (404).
    """
    consent = consent_get_for_patient(patient=patient, consent_id=consent_id)
    if consent is None:
        return _not_one_of_yours(request)
    context: dict[str, Any] = {"row": _consent_rows([consent])[0], "changes": None, "error": None}
    try:
        context["changes"] = consent_history(consent=consent)
    except LedgerError:
        log.warning("consent_portal_ledger_unavailable", action="history", user_id=request.user.pk)
        context["error"] = HISTORY_UNAVAILABLE_MESSAGE
        return render(request, "consent/detail.html", context, status=503)
    return render(request, "consent/detail.html", context)


# --- clinician ------------------------------------------------------------------------------------


GRANTED_PER_PAGE = 50


@login_required
@require_GET
def granted_to_me(request: HttpRequest) -> HttpResponse:
    """Which patients (pseudonymous ids only) have granted this clinician, or their organisation, what.

    Paginated (GRANTED_PER_PAGE a page), searched by pseudonym prefix and filtered by category, purpose, status
    and a day in force. Patients with a consent in force can be selected straight into an analysis request:
    the selection is a GET form to the analysis form, which takes their full pseudonyms (nobody copies ids).
    A filter that is not one of the listed values is answered 400 `invalid_filter`, the field named.
    """
    if not user_has_role(request.user, Role.CLINICIAN):
        return _forbidden(request, "This page is for clinicians.")
    form = GrantedConsentsFilterForm(request.GET)
    status = 200
    if form.is_valid():
        consents = consents_granted_to_filtered(user=request.user, **form.filters())
        filters = form.filters()
    else:
        consents, filters, status = Consent.objects.none(), {}, 400
    page = Paginator(consents, GRANTED_PER_PAGE).get_page(request.GET.get("page"))
    rows = _consent_rows(list(page.object_list))
    models = {declaration.purpose: declaration.name for declaration in catalogue()}
    return render(
        request,
        "consent/granted_to_me.html",
        {
            "form": form,
            "page": page,
            "rows": rows,
            "filtered": bool(filters),
            "error_code": "invalid_filter" if status == 400 else "",
            "active_patient_count": patients_with_consent_in_force_count(user=request.user),
            "selected_model": models.get(filters.get("purpose", ""), ""),
        },
        status=status,
    )


# --- helpers --------------------------------------------------------------------------------------


def _render_dashboard(
    request: HttpRequest, *, patient: Patient, form: ConsentGrantForm, status: int = 200, error: str | None = None
) -> HttpResponse:
    rows = patient_records_with_integrity(patient=patient)
    context = {
        "patient": patient,
        "rows": rows,
        # The categories the patient has records in come first in the form; the rest behind "more".
        "own_categories": sorted({row.record.category for row in rows}),
        "purpose_codes": purpose_codes(),
        "consents": _consent_rows(list(consents_of_patient(patient=patient))),
        "form": form,
        "error": error,
    }
    return render(request, "consent/dashboard.html", context, status=status)


def _consent_rows(consents: list[Consent]) -> list[ConsentRow]:
    names = {grantee.grantee_id: grantee.display_name for grantee in grantees_all()}
    rows = []
    purposes = consent_purposes()
    for consent in consents:
        name = names.get(consent.grantee)
        if name is None:
            known = grantee_get(grantee_id=consent.grantee)
            name = known.display_name if known else f"No longer in the directory ({consent.grantee})"
        rows.append(
            ConsentRow(
                consent=consent,
                grantee_name=name,
                purposes=[
                    (code, plain_words(purposes.get(code, code)), label_codes(purposes.get(code, code)))
                    for code in consent.purposes
                ],
                categories=[(code, CATEGORIES.get(code, code)) for code in consent.categories],
                first_day=consent.valid_from.date(),
                # valid_until is exclusive: the last day is the one before it ends.
                last_day=(consent.valid_until - timedelta(microseconds=1)).date(),
                status=consent.effective_status,
            )
        )
    return rows


def _ledger_failure(error: Exception, *, action: str, user: Any) -> tuple[int, str]:
    """What the portal answers when the ledger refused a change (409) or did not answer (503)."""
    if isinstance(error, ContractRejected | LedgerRejected):
        return 409, LEDGER_REJECTED_MESSAGE
    log.warning("consent_portal_ledger_unavailable", action=action, user_id=user.pk)
    return 503, LEDGER_UNAVAILABLE_MESSAGE


def _done(request: HttpRequest, consent: Consent, what: str, tx_id: str, block: int | None) -> HttpResponse:
    """Back to the dashboard at the consent, saying where the change is on the ledger."""
    where = f", block {block}." if block is not None else "."
    messages.success(request, f"{what} on the ledger in transaction {tx_id}{where}")
    return redirect(f"{reverse('consent:dashboard')}#consent-{consent.consent_id}")


def _forbidden_to_non_patients(request: HttpRequest) -> HttpResponse:
    if user_has_role(request.user, Role.PATIENT):
        return _forbidden(request, "Your account is not linked to a patient record yet. Please contact the hospital.")
    return _forbidden(request, "This page is for patients.")


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return refused(request, message, status=403, base="consent/base.html", panel=False)


NOT_ONE_OF_YOURS_MESSAGE = "There is no such consent among yours."


def _not_one_of_yours(request: HttpRequest) -> HttpResponse:
    """404 for a consent id that is not one of the patient's own: whether another patient's or none at all."""
    log.warning("consent_portal_foreign_consent", user_id=request.user.pk, action=request.method)
    back = (reverse("consent:dashboard"), "Go to your records and consents")
    return refused(request, NOT_ONE_OF_YOURS_MESSAGE, status=404, base="consent/base.html", back=back, panel=False)
