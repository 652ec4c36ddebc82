"""The audit portal: the auditors' access-log search, exports and ledger view; the patients' "who used my data".

Server-rendered; htmx only enhances: while an export is being written its row asks for itself every
second and is replaced once the export is completed or failed. Without JavaScript the page says to
reload, and everything works. Who may see what is decided in audit.selectors (the API's rules): the
auditor pages are for auditors only (patients read their own events on their own page, not in the
auditor's search); anonymous visitors are sent to sign in. Writes go through audit.services.

Auditors read ids, codes, pseudonyms, hashes and times: access events hold no clinical value or score.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from audit.access import user_may_audit
from audit.explanations import Context, explanation
from audit.exports import export_file_response
from audit.forms import AccessLogSearchForm, AuditExportForm
from audit.models import AccessEvent, AuditExport, ExportStatus
from audit.selectors import (
    AccessEventFilters,
    access_events_search,
    audit_export_manifest,
    audit_export_manifest_name,
    audit_exports_of,
    emergency_events,
    export_of_auditor,
    ledger_recent_blocks,
)
from audit.services import audit_export_create
from chaincode import vocabulary
from health_platform.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from health_platform.model_catalogue import consent_purposes, model_labels
from health_platform.portal import object_panel, object_view, refused
from health_platform.roles import Role, user_has_role
from health_platform.selectors import grantee_get
from ledger import LedgerError
from records.selectors import patient_of

log = structlog.get_logger(__name__)

EVENTS_PER_PAGE = 50
EXPORTS_PER_PAGE = 25
BLOCKS_PER_PAGE = 10
FOR_AUDITORS = "This page is for auditors."
LEDGER_UNAVAILABLE_MESSAGE = "The ledger is not reachable at the moment. Please try again later."
FAILURE_MESSAGES: dict[str, str] = {
    "ledger_unavailable": "The ledger could not be reached, so the export could not be verified; no file is offered.",
    "ledger_rejected": "The ledger refused to record the export, so no file is offered.",
}


@dataclass(frozen=True)
class EventRow:
    """An access event as a page shows it: codes resolved to labels, the model to its name and version."""

    event: AccessEvent
    model_label: str
    decision_label: str
    reason_label: str
    purpose_label: str
    kind_label: str
    requester_name: str = ""
    category_label: str = ""
    outcome_label: str = ""  # what became of an admitted access (or, on an outcome event, what it says)
    explanation: str = ""  # why it happened, in plain words (the patient's page)


@dataclass(frozen=True)
class ExportRow:
    export: AuditExport
    verified: bool | None
    problem_count: int
    failure_message: str
    filters: list[tuple[str, str]]

    @property
    def pending(self) -> bool:
        return self.export.status == ExportStatus.PENDING

    @property
    def manifest_name(self) -> str:
        return audit_export_manifest_name(export=self.export)


# --- auditors: search ----------------------------------------------------------------------------


@login_required
@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Search the access log: every filter of the API, newest or oldest first, paginated."""
    if not user_may_audit(request.user):
        return _forbidden(request, FOR_AUDITORS)
    models = model_labels()
    form = AccessLogSearchForm(request.GET, models=sorted(models.items(), key=lambda item: item[1]))
    context: dict[str, Any] = {"form": form, "page": None, "rows": [], "newest_first": True, "export_query": ""}
    if not form.is_valid():
        return render(request, "audit/search.html", context, status=400)
    terms = form.terms()
    events = access_events_search(viewer=request.user, filters=terms.filters, newest_first=terms.newest_first)
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    context.update(
        page=page,
        rows=_event_rows(list(page.object_list), models=models),
        newest_first=terms.newest_first,
        export_query=urlencode(form.filter_values()),
        filtered=bool(form.filter_values()),
    )
    return render(request, "audit/search.html", context)


# --- auditors: exports ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def exports(request: HttpRequest) -> HttpResponse:
    """GET: the export form (carrying the search's filters) and the exports. POST: start an export."""
    if not user_may_audit(request.user):
        return _forbidden(request, FOR_AUDITORS)
    models = model_labels()
    choices = sorted(models.items(), key=lambda item: item[1])
    if request.method == "GET":
        # The filters come from the search page's "Export these results" link; bad ones are not dropped
        # silently (that would export everything): the page says so and offers no export.
        search_form = AccessLogSearchForm(request.GET, models=choices)
        form = AuditExportForm(initial={"format": "csv"}, models=choices)
        if not search_form.is_valid():
            return _render_exports(request, form, [], models, status=400, filters_invalid=True)
        return _render_exports(request, form, search_form.filter_values(), models)
    form = AuditExportForm(request.POST, models=choices)
    if not form.is_valid():
        return _render_exports(request, form, form.filter_values(), models, status=400)
    try:
        export = audit_export_create(
            requester=request.user, format=form.cleaned_data["format"], filters=form.terms().filters
        )
    except ValidationFailed as error:
        form.add_error("format", error.message)
        return _render_exports(request, form, form.filter_values(), models, status=400)
    except PermissionDenied:
        return _forbidden(request, FOR_AUDITORS)
    messages.success(request, f"Export {export.pk} started. Its row below shows when the file is ready.")
    return redirect(f"{reverse('audit:exports')}#export-{export.pk}")


def _export(request: HttpRequest, export_id: str) -> AuditExport | HttpResponse:
    if not user_may_audit(request.user):
        return _forbidden(request, FOR_AUDITORS)
    try:
        return export_of_auditor(user=request.user, export_id=export_id)
    except NotFound:
        return _not_found(request, "There is no such export.")


@object_panel(_export, page=lambda export: f"{reverse('audit:exports')}#export-{export.pk}")
def export_row(request: HttpRequest, export: AuditExport) -> HttpResponse:
    """One export's row, for htmx polling: 204 while it is still being written (htmx keeps polling)."""
    if export.status == ExportStatus.PENDING:
        return HttpResponse(status=204)
    return render(request, "audit/_export_row.html", {"row": _export_row(export, model_labels())})


@login_required
@require_GET
@object_view(_export)
def export_download(request: HttpRequest, export: AuditExport) -> HttpResponseBase:
    """The export's file, as an attachment named as in its manifest."""
    try:
        return export_file_response(export=export, user=request.user)
    except (Conflict, NotFound) as error:
        status = 409 if isinstance(error, Conflict) else 404
        return render(request, "audit/not_ready.html", {"message": error.message, "export": export}, status=status)


@login_required
@require_GET
@object_view(_export)
def export_manifest(request: HttpRequest, export: AuditExport) -> HttpResponse:
    """The export's manifest as JSON (filters, count, time, file name and SHA-256, verification)."""
    response = JsonResponse(audit_export_manifest(export=export), json_dumps_params={"indent": 2})
    # Saved under this name beside the downloaded file, `manage.py verify_access_log FILE` finds it.
    response["Content-Disposition"] = f'inline; filename="{audit_export_manifest_name(export=export)}"'
    return response


# --- auditors: the ledger ------------------------------------------------------------------------


@login_required
@require_GET
def ledger(request: HttpRequest) -> HttpResponse:
    """Recent blocks and their transactions (ids, hashes, status, contract/function), older pages by `before`."""
    if not user_may_audit(request.user):
        return _forbidden(request, FOR_AUDITORS)
    before_text = request.GET.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    try:
        blocks = ledger_recent_blocks(viewer=request.user, limit=BLOCKS_PER_PAGE, before=before)
    except LedgerError:
        log.warning("audit_portal_ledger_unavailable", user_id=request.user.pk)
        return render(request, "audit/ledger.html", {"blocks": [], "error": LEDGER_UNAVAILABLE_MESSAGE}, status=503)
    older = blocks[-1].number if len(blocks) == BLOCKS_PER_PAGE and blocks[-1].number > 0 else None
    newer = None
    if before is not None and blocks:
        newer = blocks[0].number + 1 + BLOCKS_PER_PAGE
    return render(
        request,
        "audit/ledger.html",
        {"blocks": blocks, "older": older, "newer": newer, "at_newest": before is None, "error": None},
    )


# --- patients: who used my data ------------------------------------------------------------------


@login_required
@require_GET
def my_data(request: HttpRequest) -> HttpResponse:
    """Every access event about the signed-in patient's records: who, for what, which model, the decision."""
    patient = patient_of(request.user)
    if patient is None:
        if user_has_role(request.user, Role.PATIENT):
            return _forbidden(request, "Your account is not linked to a patient record yet.")
        return _forbidden(request, "This page is for patients.")
    events = access_events_search(
        viewer=request.user, filters=AccessEventFilters(patient_pseudonym=patient.pseudonym), newest_first=True
    ).exclude(kind="outcome")  # an outcome event about one of the patient's records is shown on the access it concerns
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = _explained(_event_rows(list(page.object_list), models=model_labels(), with_names=True))
    return render(request, "audit/my_data.html", {"page": page, "rows": rows, "patient": patient})


def _explained(rows: list[EventRow]) -> list[EventRow]:
    """The rows with their plain-words explanation; an emergency's reason and verdict come from the events of its
    declaration and review (one query for the page)."""
    declarations = {row.event.request_id for row in rows if row.event.purpose == vocabulary.EMERGENCY}
    emergencies = emergency_events(request_ids=declarations)
    explained = []
    for row in rows:
        event = row.event
        declared, reviewed = emergencies.get(event.request_id, ("", ""))
        context = Context(
            who=row.requester_name or event.grantee,
            model=row.model_label,
            purpose=row.purpose_label,
            emergency_reason=declared,
            verdict=reviewed,
        )
        words = explanation(
            kind=event.kind,
            purpose=event.purpose,
            decision=event.decision,
            reason=event.reason,
            consent_id=event.consent_id,
            request_id=event.request_id,
            context=context,
        )
        explained.append(dataclasses.replace(row, explanation=words))
    return explained


# --- helpers -------------------------------------------------------------------------------------


def _event_rows(events: list[AccessEvent], *, models: dict[str, str], with_names: bool = False) -> list[EventRow]:
    names: dict[str, str] = {}
    purposes = {**consent_purposes(), **vocabulary.AUDIT_PURPOSES}
    rows = []
    for event in events:
        if with_names and event.grantee not in names:
            known = grantee_get(grantee_id=event.grantee)
            names[event.grantee] = known.display_name if known else ""
        rows.append(
            EventRow(
                event=event,
                model_label=models.get(event.model_hash, ""),
                decision_label=vocabulary.DECISION_LABELS.get(event.decision, event.decision),
                reason_label=vocabulary.REASON_LABELS.get(event.reason, event.reason) if event.reason else "",
                outcome_label=_outcome_label(event),
                purpose_label=purposes.get(event.purpose, event.purpose),
                kind_label=vocabulary.EVENT_KINDS.get(event.kind, event.kind),
                requester_name=names.get(event.grantee, ""),
                category_label=vocabulary.CATEGORIES.get(event.category, event.category) if event.category else "",
            )
        )
    return rows


def _outcome_label(event: AccessEvent) -> str:
    """ "Computed", or "Not computed: <why>", for an admitted record access whose outcome the ledger holds."""
    if not event.outcome:
        return ""
    label = vocabulary.OUTCOMES.get(event.outcome, event.outcome)
    reason = vocabulary.NOT_COMPUTED_REASONS.get(event.outcome_reason, event.outcome_reason)
    return f"{label}: {reason[:1].lower()}{reason[1:]}" if reason else label


def _export_row(export: AuditExport, models: dict[str, str]) -> ExportRow:
    verification = export.verification or {}
    filters = []
    for name, value in sorted(export.filters.items()):
        filters.append((name, models.get(value, value) if name == "model_hash" else value))
    code = export.failure_code
    return ExportRow(
        export=export,
        verified=verification.get("ok") if verification else None,
        problem_count=int(verification.get("problem_count") or 0),
        failure_message=FAILURE_MESSAGES.get(code, "The export stopped; no file is offered.") if code else "",
        filters=filters,
    )


def _render_exports(
    request: HttpRequest,
    form: AuditExportForm,
    filter_values: list[tuple[str, str]],
    models: dict[str, str],
    status: int = 200,
    filters_invalid: bool = False,
) -> HttpResponse:
    page = Paginator(audit_exports_of(viewer=request.user), EXPORTS_PER_PAGE).get_page(request.GET.get("page"))
    labels = dict(models)
    shown = [(name, labels.get(value, value) if name == "model" else value) for name, value in filter_values]
    context = {
        "form": form,
        "filter_values": filter_values,
        "search_query": urlencode(filter_values),
        "shown_filters": shown,
        "page": page,
        "rows": [_export_row(export, models) for export in page.object_list],
        "filters_invalid": filters_invalid,
    }
    return render(request, "audit/exports.html", context, status=status)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return refused(request, message, status=403, base="audit/base.html")


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    return refused(
        request, message, status=404, base="audit/base.html", back=(reverse("audit:exports"), "Go to the exports")
    )
