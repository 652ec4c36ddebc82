"""The patient's erasure in the portal: what it does, the confirmation, the receipt and its check on the ledger.

Only the patient themself (records.access.user_may_erase_own_records): POST with the CSRF token and the
confirmation box ticked. Staff do not erase for a patient here.
"""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from health_platform.errors import ApplicationError
from ledger import LedgerError
from records.access import user_may_erase_own_records
from records.erasure import erasure_receipt, erasure_receipt_bytes, erasure_receipt_verify, patient_erase
from records.models import ErasureState, Patient, PatientErasure
from records.views import own_patient


def _own_patient(request: HttpRequest) -> Patient:
    patient = own_patient(request, may=user_may_erase_own_records)
    if patient is None:
        raise Http404
    return patient


@login_required
@require_http_methods(["GET", "POST"])
def my_erasure(request: HttpRequest) -> HttpResponse:
    """GET: the explanation and the confirmation, or once erased the receipt and its live check on the ledger.
    POST (confirm=yes): erase; a half-done erasure is finished by asking again."""
    patient = _own_patient(request)
    erasure = PatientErasure.objects.filter(patient=patient).first()
    context: dict[str, Any] = {
        "patient": patient,
        "erasure": erasure,
        "error": None,
        "verification": None,
        "receipt": None,
    }
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            context["error"] = "Tick the box to confirm that you want your data erased."
            return render(request, "records/erasure.html", context, status=400)
        try:
            patient_erase(actor=request.user, patient=patient)
        except ApplicationError as error:
            context.update(error=error.message, erasure=PatientErasure.objects.filter(patient=patient).first())
            return render(request, "records/erasure.html", context, status=error.status)
        return redirect("records:erasure")
    if erasure is not None and erasure.state != ErasureState.REQUESTED:
        context["receipt"] = erasure_receipt(erasure=erasure)
        try:
            context["verification"] = erasure_receipt_verify(raw=erasure_receipt_bytes(erasure=erasure))
        except LedgerError:
            context["error"] = "The ledger did not answer: the receipt could not be checked now. Try again later."
    return render(request, "records/erasure.html", context)


@login_required
@require_GET
def my_erasure_receipt(request: HttpRequest) -> HttpResponse:
    """The receipt as a JSON file, once the ledger holds the erasure."""
    patient = _own_patient(request)
    erasure = PatientErasure.objects.filter(patient=patient).exclude(state=ErasureState.REQUESTED).first()
    if erasure is None:
        raise Http404
    response = HttpResponse(erasure_receipt_bytes(erasure=erasure), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="erasure-receipt-{erasure.pk}.json"'
    return response
