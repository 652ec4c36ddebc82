"""The auditor's home: the state of the access log (events per day, refusals by reason, latest exports, the
chain's height, the latest verification) as server-drawn charts and figures, and a form to verify a copy of an
export against the ledger: the portal's face of POST /api/audit/verify/ (the same service, audit.copies).

The result names problems by event id and kind, never by values, and says whether completeness was checked.
"""

from typing import Any

import structlog
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from audit.access import user_may_audit
from audit.api import uploaded_manifest, verify_max_bytes
from audit.charts import bars_svg
from audit.copies import copy_verify
from audit.forms import CopyVerifyForm
from audit.selectors import access_log_overview
from chaincode.vocabulary import REASON_LABELS
from health_platform.errors import PayloadTooLarge, ValidationFailed
from health_platform.portal import refused
from ledger import LedgerError

log = structlog.get_logger(__name__)

PROBLEM_KINDS: dict[str, str] = {
    "absent_from_ledger": "not on the ledger",
    "changed": "changed since it was logged",
    "wrong_transaction": "names another transaction",
    "wrong_block": "names another block",
    "not_committed": "its transaction is not committed",
    "missing_from_copy": "on the ledger, missing from the copy",
    "out_of_scope": "outside the export's scope",
    "reordered": "out of order",
    "duplicated": "appears twice",
}


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The auditor's home: the log's state and the verify-a-copy form."""
    if not user_may_audit(request.user):
        return _forbidden(request)
    return render(request, "audit/overview.html", _context(request, CopyVerifyForm()))


@login_required
@require_POST
def verify_copy(request: HttpRequest) -> HttpResponse:
    """Verify an uploaded copy: 200 with the verdict (ok, or the problems by event id); 400 with a stable code for
    a form, file or manifest that cannot be used; 413 past the size limit; 503 when the ledger does not answer."""
    if not user_may_audit(request.user):
        return _forbidden(request)
    form = CopyVerifyForm(request.POST, request.FILES)
    if not form.is_valid():
        return _answer(request, form, error=("validation_failed", "Please correct the form."), status=400)
    upload = form.cleaned_data["file"]
    try:
        if upload.size > verify_max_bytes():
            raise PayloadTooLarge(detail={"max_bytes": verify_max_bytes()})
        manifest = uploaded_manifest(form.cleaned_data.get("manifest"))
        result = copy_verify(stream=upload.file, format=form.cleaned_data["format"], manifest=manifest)
    except (ValidationFailed, PayloadTooLarge) as error:
        return _answer(request, form, error=(error.code, error.message), status=error.status)
    except LedgerError as error:
        log.warning("audit_portal_ledger_unavailable", action="verify", user_id=request.user.pk)
        return _answer(request, form, error=(error.code, "The ledger did not answer: try again."), status=503)
    log.info(
        "audit_copy_verified",
        user_id=request.user.pk,
        door="portal",
        checked=result["checked"],
        problems=result["problem_count"],
        completeness_checked=result["completeness_checked"],
        ok=result["ok"],
    )
    problems = [
        (p["event_id"], p["kind"], PROBLEM_KINDS.get(p["kind"], p["kind"]), p["fields"]) for p in result["problems"]
    ]
    return _answer(request, CopyVerifyForm(), result=result, problems=problems, status=200)


def _answer(request: HttpRequest, form: CopyVerifyForm, *, status: int, **extra: Any) -> HttpResponse:
    if getattr(request, "htmx", False):
        return render(request, "audit/_verify_result.html", {"form": form, **extra}, status=status)
    return render(request, "audit/overview.html", {**_context(request, form), **extra}, status=status)


def _context(request: HttpRequest, form: CopyVerifyForm) -> dict[str, Any]:
    state = access_log_overview(viewer=request.user)
    per_day = [(day.strftime("%d %b"), count) for day, count in state.events_per_day]
    reasons = [(REASON_LABELS.get(reason, reason or "unstated"), count) for reason, count in state.refusals_by_reason]
    return {
        "state": state,
        "form": form,
        "per_day_chart": bars_svg(per_day, chart_id="events-per-day", title="Access events per day, last 14 days"),
        "reasons_chart": bars_svg(reasons, chart_id="refusals-by-reason", title="Refusals by reason", unit="refusal"),
        "refusal_total": sum(count for _reason, count in state.refusals_by_reason),
        "verification": state.last_verified.verification if state.last_verified else None,
    }


def _forbidden(request: HttpRequest) -> HttpResponse:
    return refused(request, "This page is for auditors.", status=403, base="audit/base.html")
