"""The patient portal's record pages (server-rendered; no JavaScript needed)."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from records.access import user_may_read_own_records
from records.errors import CiphertextInvalid
from records.models import Patient
from records.selectors import (
    bundle_observation_rows,
    patient_records,
    patient_records_with_integrity,
    record_version_document,
)


def own_patient(request: HttpRequest, *, may: Callable[[Any], bool] = user_may_read_own_records) -> Patient | None:
    """The signed-in user's patient (None: their account is not linked to one); PermissionDenied unless `may`
    (a records.access rule) admits the user."""
    if not may(request.user):
        raise PermissionDenied
    return Patient.objects.filter(user_id=int(request.user.pk or 0)).first()


@login_required
@require_GET
def my_records(request: HttpRequest) -> HttpResponse:
    """The patient's records: category, latest version, its anchor and a live integrity check."""
    patient = own_patient(request)
    rows = patient_records_with_integrity(patient=patient) if patient and not patient.erased_at else []
    return render(request, "records/my_records.html", {"rows": rows, "patient": patient})


@login_required
@require_GET
def my_record_detail(request: HttpRequest, record_id: UUID) -> HttpResponse:
    """One of the patient's records, decrypted: its observations as a table."""
    patient = own_patient(request)
    record = next((r for r in patient_records(patient=patient) if r.pk == record_id), None) if patient else None
    if record is None:
        raise Http404
    versions = list(record.versions.all())
    latest = versions[-1] if versions else None
    observations: list[dict[str, Any]] = []
    unreadable = False
    if latest is not None:
        try:
            observations = bundle_observation_rows(bundle=record_version_document(record_version=latest))
        except CiphertextInvalid:
            unreadable = True
    return render(
        request,
        "records/record_detail.html",
        {
            "record": record,
            "latest": latest,
            "versions": versions,
            "observations": observations,
            "unreadable": unreadable,
        },
    )
