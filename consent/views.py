"""The consent portal: the patient's dashboard (records, consents, grant, revoke, history) and the
clinician's page of consents naming them.

Server-rendered; htmx only enhances (the history panel and the revoke confirmation load in place),
and every action works without JavaScript. The patient is always the signed-in user's own: no
form or URL carries a patient. Writes go through consent.services, reads through the selectors.
"""

import json
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
from consent.forms import ConsentGrantForm, GrantedConsentsFilterForm, PasskeyResetForm, purpose_codes
from consent.models import Consent
from consent.passkeys import (
    RECOVERY_REASONS,
    patient_keys_of,
    patient_passkey_add_document,
    patient_passkey_change,
    patient_passkey_enrol_waiting,
    patient_passkey_revoke_document,
    patient_passkeys,
    patient_passkeys_recover,
    signing_request,
)
from consent.selectors import (
    consent_get_for_patient,
    consent_history,
    consents_granted_to_filtered,
    consents_of_patient,
    patients_with_consent_in_force_count,
)
from consent.services import consent_grant, consent_grant_document, consent_revoke, consent_revoke_document
from health_platform.errors import LedgerRejected, PermissionDenied, SignatureRefused, ValidationFailed
from health_platform.model_catalogue import catalogue, consent_purposes
from health_platform.portal import refused
from health_platform.roles import Role, user_has_role
from health_platform.selectors import grantee_get, grantees_all
from health_platform.wording import label_codes, plain_words
from ledger import ContractRejected, LedgerError
from records.models import Patient
from records.selectors import patient_by_identifier, patient_records_with_integrity

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
    """Grant a consent, in two steps. The form's terms: checked, then the page that shows what will be signed and
    asks the patient's passkey to sign it. The signed document: to the ledger, which verifies the signature.
    On a refusal, the dashboard again with the reason by the field, or the signing page with the ledger's reason."""
    if "signature" in request.POST:
        return _submit_signed(
            request, patient, lambda signed: consent_grant(actor=request.user, patient=patient, **signed)
        )
    form = ConsentGrantForm(request.POST, grantees=grantees_all())
    if not form.is_valid():
        return _render_dashboard(request, patient=patient, form=form, status=400)
    valid_from, valid_until = form.period()
    try:
        document = consent_grant_document(
            actor=request.user,
            patient=patient,
            grantee_id=form.cleaned_data["grantee"],
            purposes=form.cleaned_data["purposes"],
            categories=form.cleaned_data["categories"],
            valid_from=valid_from,
            valid_until=valid_until,
        )
        return _signing_page(request, patient, document, action=reverse("consent:grant"))
    except ValidationFailed as error:
        form.add_service_error(error)
        return _render_dashboard(request, patient=patient, form=form, status=400)
    except PermissionDenied:
        return _forbidden(request, "Only the patient a consent concerns can grant it.")
    except LedgerError as error:
        status, message = _ledger_failure(error, action="grant", user=request.user)
        return _render_dashboard(request, patient=patient, form=form, status=status, error=message)


@login_required
@require_http_methods(["GET", "POST"])
@patient_view
def revoke(request: HttpRequest, patient: Patient, consent_id: str) -> HttpResponse:
    """GET: the confirmation, with the revocation for the patient's passkey to sign (a page of its own, or loaded in
    place by htmx). POST: the signed revocation, to the ledger.

    Any consent id that is not one of the signed-in patient's own consents is answered 404, before
    anything reaches the ledger, whether it belongs to someone else or does not exist: one answer for
    both, so that it never tells that another patient's consent exists.
    """
    consent = consent_get_for_patient(patient=patient, consent_id=consent_id)
    if consent is None:
        return _not_one_of_yours(request)
    if request.method == "POST":
        return _submit_signed(
            request, patient, lambda signed: [consent_revoke(actor=request.user, consent=consent, **signed)]
        )
    document = consent_revoke_document(actor=request.user, consent=consent)
    return _signing_page(
        request,
        patient,
        document,
        action=reverse("consent:revoke", args=[consent.consent_id]),
        row=_consent_rows([consent])[0],
    )


MAX_SIGNED_FIELD_BYTES = 64 * 1024
SIGNATURE_REFUSED_MESSAGE = (
    "The ledger did not accept your passkey's signature ({code}), so nothing was changed. Please sign again with one "
    "of your passkeys."
)


def _signing_page(
    request: HttpRequest,
    patient: Patient,
    document: dict[str, Any],
    *,
    action: str,
    row: ConsentRow | None = None,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """The page that shows a change in plain words and has the patient's passkey sign its document."""
    try:
        asked = signing_request(patient=patient, document=document)
    except LedgerError as failure:
        _, message = _ledger_failure(failure, action="sign", user=request.user)
        asked, error, status = None, message, 503
    context = {
        "asked": asked,
        "credentials_json": json.dumps(asked.credential_ids if asked else []),
        "document_json": json.dumps(document, sort_keys=True, separators=(",", ":")),
        "action": action,
        "rows": [row] if row else _document_rows(document),
        "revocation": row is not None,
        "error": error,
    }
    return render(request, "consent/sign.html", context, status=status)


def _submit_signed(
    request: HttpRequest, patient: Patient, change: Callable[[dict[str, Any]], list[Consent]]
) -> HttpResponse:
    """Send a signed document (the form's `document` and `signature`, JSON) through `change`; the dashboard at the
    consent when the ledger took it, the signing page again with the reason when not."""
    signed = _signed_fields(request)
    if signed is None:
        return _unsigned(request)
    document = signed["document"]
    try:
        changed = change(signed)
    except SignatureRefused as error:
        message = SIGNATURE_REFUSED_MESSAGE.format(code=error.code)
        return _signing_page(request, patient, document, action=request.path, error=message, status=403)
    except PermissionDenied:
        return _forbidden(request, "Only the patient a consent concerns can change it.")
    except ValidationFailed as error:  # the document itself is wrong: not shown again, nothing in it echoed
        back = (reverse("consent:dashboard"), "Back to your records and consents")
        message = f"{error.message} Nothing was changed ({error.code})."
        return refused(request, message, status=400, base="consent/base.html", back=back, panel=False)
    except (LedgerError, LedgerRejected) as error:
        status, message = _ledger_failure(error, action="sign", user=request.user)
        return _signing_page(request, patient, document, action=request.path, error=message, status=status)
    consent = changed[0]
    if consent.status == "revoked":
        return _done(
            request, consent, "Consent revoked. The revocation is", consent.revoked_tx_id, consent.revoked_block
        )
    return _done(request, consent, "Consent granted. It is", consent.granted_tx_id, consent.granted_block)


def _signed_fields(request: HttpRequest) -> dict[str, Any] | None:
    """The form's signed document: {"document": {...}, "signature": {...}}, or None if either is missing or not a
    JSON object of sane size."""
    signed = {}
    for field in ("document", "signature"):
        raw = request.POST.get(field, "")
        try:
            signed[field] = json.loads(raw) if 0 < len(raw) <= MAX_SIGNED_FIELD_BYTES else None
        except ValueError:
            signed[field] = None
        if not isinstance(signed[field], dict):
            return None
    return signed


def _unsigned(request: HttpRequest, back: str = "consent:dashboard") -> HttpResponse:
    return refused(
        request,
        "The change was not signed by your passkey, so nothing was changed (signature_required).",
        status=400,
        base="consent/base.html",
        back=(reverse(back), "Back"),
        panel=False,
    )


# --- the patient's passkeys -----------------------------------------------------------------------


@login_required
@require_GET
@patient_view
def passkeys(request: HttpRequest, patient: Patient) -> HttpResponse:
    """The patient's passkeys, on their account and on the ledger; every recovery the hospital made; and the forms
    that put a new passkey on the ledger (signed by one already there) or take one off (signed)."""
    return _passkeys_page(request, patient)


@login_required
@require_POST
@patient_view
def passkey_enrol(request: HttpRequest, patient: Patient, authenticator_id: int) -> HttpResponse:
    """Put a waiting passkey on the ledger as the patient's first (only while they have none there)."""
    return _passkey_change(
        request,
        patient,
        lambda: patient_passkey_enrol_waiting(actor=request.user, patient=patient, authenticator_id=authenticator_id),
        "Your passkey is on the ledger: it signs your consents from now on.",
    )


@login_required
@require_POST
@patient_view
def passkey_signed(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Put another passkey on the ledger, or take one off, by a document signed with a passkey already there."""
    signed = _signed_fields(request)
    if signed is None:
        return _unsigned(request, "consent:passkeys")
    added = signed["document"].get("action") == "add_patient_key"
    return _passkey_change(
        request,
        patient,
        lambda: patient_passkey_change(actor=request.user, patient=patient, **signed),
        "The new passkey is on the ledger: it can sign your consents too."
        if added
        else "The passkey is off the ledger: it can no longer sign your consents.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def passkey_reset(request: HttpRequest) -> HttpResponse:
    """The custodian resets a patient's lost passkeys (consent.passkeys.patient_passkeys_recover): on the ledger, on
    the patient's passkeys page and by e-mail. Custodians only."""
    if not user_has_role(request.user, Role.CUSTODIAN):
        return _forbidden(request, "This page is for custodians.")
    form = PasskeyResetForm(request.POST or None, reasons=RECOVERY_REASONS)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            patient = patient_by_identifier(system=data["identifier_system"], value=data["identifier_value"])
            if patient is None:
                form.add_error("identifier_value", "No ingested patient has this identifier.")
            else:
                try:
                    keys = patient_passkeys_recover(actor=request.user, patient=patient, reason=data["reason"])
                except LedgerError as error:
                    status, message = _ledger_failure(error, action="passkey_reset", user=request.user)
                    form.add_error(None, message)
                else:
                    recovery = keys.recoveries[-1]
                    messages.success(
                        request,
                        f"{len(recovery.revoked)} passkey(s) taken off the ledger in transaction {recovery.tx_id}. The "
                        "patient was told by e-mail and adds a new passkey at their next sign-in.",
                    )
                    return redirect("consent:passkey-reset")
    return render(request, "consent/passkey_reset.html", {"form": form}, status=status)


def _passkey_change(request: HttpRequest, patient: Patient, change: Callable[[], Any], done: str) -> HttpResponse:
    try:
        change()
    except SignatureRefused as error:
        return _passkeys_page(request, patient, error=SIGNATURE_REFUSED_MESSAGE.format(code=error.code), status=403)
    except PermissionDenied:
        return _forbidden(request, "Only the patient can change their passkeys.")
    except ValidationFailed as error:
        return _passkeys_page(request, patient, error=f"{error} ({error.code})", status=400)
    except (ContractRejected, LedgerRejected) as error:
        return _passkeys_page(request, patient, error=f"The ledger refused this change ({error.code}).", status=409)
    except LedgerError as error:
        _, message = _ledger_failure(error, action="passkey", user=request.user)
        return _passkeys_page(request, patient, error=message, status=503)
    messages.success(request, done)
    return redirect("consent:passkeys")


def _passkeys_page(
    request: HttpRequest, patient: Patient, *, error: str | None = None, status: int = 200
) -> HttpResponse:
    try:
        keys = patient_keys_of(patient=patient)
    except LedgerError as failure:
        _, message = _ledger_failure(failure, action="passkeys", user=request.user)
        return render(request, "consent/passkeys.html", {"error": message, "keys": None}, status=503)
    rows = []
    active = [key.credential_id for key in keys.active]
    for passkey in patient_passkeys(patient=patient, keys=keys):
        document = None
        if passkey.state == "waiting" and active and passkey.authenticator_id is not None:
            document = patient_passkey_add_document(
                actor=request.user, patient=patient, authenticator_id=passkey.authenticator_id
            )
        elif passkey.ledger and passkey.ledger.status == "active" and len(active) > 1:
            document = patient_passkey_revoke_document(
                actor=request.user, patient=patient, credential_id=passkey.credential_id
            )
        asked = signing_request(patient=patient, document=document, keys=keys) if document else None
        rows.append(
            {
                "passkey": passkey,
                "asked": asked,
                "document_json": json.dumps(document, sort_keys=True, separators=(",", ":")) if document else "",
                "credentials_json": json.dumps(asked.credential_ids if asked else []),
            }
        )
    context = {"keys": keys, "rows": rows, "has_active": bool(active), "error": error}
    return render(request, "consent/passkeys.html", context, status=status)


def _document_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A grant document's grants in plain words, for the patient to read before signing. Only what the platform
    knows is shown (a document comes back from the browser: nothing it carries is echoed)."""
    names = {grantee.grantee_id: grantee.display_name for grantee in grantees_all()}
    purposes = consent_purposes()
    found = document.get("grants")
    grants: list[Any] = found if isinstance(found, list) else []

    def known(codes: Any, vocabulary: dict[str, str]) -> list[str]:
        return (
            [vocabulary[code] for code in codes if isinstance(code, str) and code in vocabulary]
            if isinstance(codes, list)
            else []
        )

    return [
        {
            "grantee_name": names.get(str(grant.get("grantee")), "an unknown grantee"),
            "purposes": [plain_words(label) for label in known(grant.get("purposes"), purposes)],
            "categories": known(grant.get("categories"), CATEGORIES),
            "valid_from": str(grant.get("valid_from", ""))[:10],
            "valid_until": str(grant.get("valid_until", ""))[:10],
        }
        for grant in grants
        if isinstance(grant, dict)
    ]


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
        "passkey_needed": _passkey_needed(patient),
    }
    return render(request, "consent/dashboard.html", context, status=status)


def _passkey_needed(patient: Patient) -> bool:
    """Whether the patient has no passkey on the ledger yet (and so cannot sign a grant); not asked while the
    ledger is away (the dashboard still shows the rest)."""
    try:
        return not patient_keys_of(patient=patient).active
    except LedgerError:
        return False


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
