"""The clinician's portal page for reading a patient's records for treatment."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from care.services import treatment_records_read
from chaincode.vocabulary import CATEGORIES, REFUSAL_REASONS
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.portal import refused

BASE = "consent/base.html"


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
    return render(
        request,
        "care/patient_records.html",
        {
            "read": read,
            "category_label": CATEGORIES[category],
            "reasons": REFUSAL_REASONS,
            "status_code": "admitted" if read.admitted else "refused",
        },
        status=200 if read.admitted or not read.records else 403,
    )
