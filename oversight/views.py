"""The auditors' misuse alerts: the list (open first), one alert with its reasons and the detector it cites, the
triage, and "score now"."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chaincode.vocabulary import ALERT_VERDICTS
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.portal import refused, verdict_posted
from health_platform.roles import Role, user_has_role
from oversight import selectors, services, tasks
from oversight.models import Alert

BASE = "audit/base.html"


@login_required
@require_GET
def alerts(request: HttpRequest) -> HttpResponse:
    try:
        listed = selectors.alerts_visible_to(user=request.user)
    except PermissionDenied as denied:
        return refused(request, denied.message, status=403, base=BASE)
    rows = [(alert, selectors.clinician_name(alert.grantee_id)) for alert in listed[:300]]
    return render(
        request,
        "oversight/alerts.html",
        {"rows": rows, "open_count": selectors.open_alert_count(), "detector": selectors.detectors().first()},
    )


@login_required
@require_GET
def alert_detail(request: HttpRequest, alert_id: str) -> HttpResponse:
    if not user_has_role(request.user, Role.AUDITOR):
        return refused(request, "Misuse alerts are for auditors.", status=403, base=BASE)
    try:
        alert = services.alert_get(alert_id=alert_id)
    except NotFound:
        return refused(request, "No such alert.", status=404, base=BASE)
    return render(request, "oversight/alert_detail.html", _context(alert))


def _context(alert: Alert, **extra: object) -> dict[str, object]:
    return {
        "alert": alert,
        "clinician": selectors.clinician_name(alert.grantee_id),
        "note": services.triage_note_open(alert),
        "verdicts": ALERT_VERDICTS,
        "open": not alert.judged,
        **extra,
    }


@login_required
@require_POST
def alert_triage(request: HttpRequest, alert_id: str) -> HttpResponse:
    def again(error: ValidationFailed) -> HttpResponse:
        context = _context(services.alert_get(alert_id=alert_id), error=error, posted=request.POST)
        return render(request, "oversight/alert_detail.html", context, status=400)

    return verdict_posted(
        request,
        judge=lambda verdict, note: services.alert_triage(
            auditor=request.user, alert_id=alert_id, verdict=verdict, note=note
        ),
        again=again,
        base=BASE,
        done=reverse("oversight:alerts"),
        message="Triage recorded on the ledger.",
    )


@login_required
@require_POST
def score_now(request: HttpRequest) -> HttpResponse:
    if not user_has_role(request.user, Role.AUDITOR):
        return refused(request, "Only auditors ask for a scoring run.", status=403, base=BASE)
    tasks.misuse_score_run.delay()
    messages.success(request, "Scoring queued: new alerts appear here when the workers are done.")
    return redirect("oversight:alerts")
