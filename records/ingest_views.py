"""The custodian's portal: upload a FHIR bundle and read its per-entry report; the ingest history.

Server-rendered; htmx only enhances: the upload is posted in place, a progress bar shows while the file is sent
and processed, and the report replaces the panel. Without JavaScript the form posts and the page comes back with
the report. The report names entries by index and stable code, never their values. Writes go through
records.services, reads through records.selectors; who may ingest is records.access's.
"""

from typing import Any

import structlog
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from health_platform.portal import refused
from records.access import user_may_ingest_records
from records.forms import BundleUploadForm
from records.selectors import ingest_runs
from records.services import record_ingest_upload

log = structlog.get_logger(__name__)

HISTORY_PER_PAGE = 25
RECENT_ON_HOME = 5

# What a custodian reads for each refusal code of the ingest (the code is shown beside it).
REFUSAL_MESSAGES: dict[str, str] = {
    "malformed_json": "The file is not UTF-8 encoded JSON.",
    "not_a_bundle": "The file is not a FHIR Bundle.",
    "empty_bundle": "The bundle has no Observation to record.",
    "fhir_invalid": "An entry is not valid FHIR R4.",
    "payload_too_large": "The bundle is over a configured limit (size or entries).",
    "json_too_deep": "The JSON is nested deeper than allowed.",
}
ENTRY_CODES: dict[str, str] = {
    "stored": "stored as a new record version, anchored on the ledger",
    "stored_anchoring_pending": "stored as a new record version; its anchor is written when the ledger answers",
    "unchanged": "already stored with this content: nothing new",
    "unchanged_anchoring_pending": "already stored with this content; its anchor is still pending",
    "patient": "the patient these records belong to (kept as a pseudonym only)",
    "no_observation": "not stored: no observation refers to it",
    "bundle_refused": "not stored: the bundle was refused as a whole (nothing of it is stored)",
}


@login_required
@require_http_methods(["GET", "POST"])
def ingest(request: HttpRequest) -> HttpResponse:
    """GET: the custodian's home: the upload form and the latest uploads. POST: ingest the uploaded bundle and
    answer its report (200 stored; 400 refused, 413 over a limit, with the refusal's stable code)."""
    if not user_may_ingest_records(request.user):
        return _forbidden(request)
    context: dict[str, Any] = {"recent": list(ingest_runs()[:RECENT_ON_HOME])}
    if request.method == "GET":
        return render(request, "records/ingest.html", {**context, "form": BundleUploadForm()})
    form = BundleUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        status = 413 if form.has_error("bundle", "payload_too_large") else 400
        code = "payload_too_large" if status == 413 else "invalid_upload"
        return _answer(request, {**context, "form": form, "error_code": code}, status)
    upload = form.cleaned_data["bundle"]
    report = record_ingest_upload(raw_body=upload.read(), actor=request.user)
    context.update(
        form=BundleUploadForm(),
        report=report,
        refusal_message=REFUSAL_MESSAGES.get(report.code, report.message),
        entry_codes=ENTRY_CODES,
        recent=list(ingest_runs()[:RECENT_ON_HOME]),
    )
    return _answer(request, context, report.status)


@login_required
@require_GET
def ingest_history(request: HttpRequest) -> HttpResponse:
    """Every ingest, newest first: who, when, through which door, stored or refused (with the code), counts."""
    if not user_may_ingest_records(request.user):
        return _forbidden(request)
    page = Paginator(ingest_runs(), HISTORY_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "records/ingest_history.html", {"page": page})


def _answer(request: HttpRequest, context: dict[str, Any], status: int) -> HttpResponse:
    """The report panel in place for htmx, the whole page otherwise."""
    template = "records/_ingest_result.html" if getattr(request, "htmx", False) else "records/ingest.html"
    return render(request, template, context, status=status)


def _forbidden(request: HttpRequest) -> HttpResponse:
    return refused(
        request, "This page is for the hospital's data custodians.", status=403, base="records/custodian_base.html"
    )
