"""The patient's "Models my records trained": each model a completed training run produced from their records, which
records (never a clinical value), how they were used, the consent that admitted them and whether it has since been
revoked; and, per record, the inclusion proof to download and check offline (python -m chaincode.merkle verify)."""

import json
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from health_platform.errors import ApplicationError
from health_platform.portal import refused
from records.selectors import patient_of
from training.access import user_may_see_models_trained_on_own_records
from training.selectors import models_trained_on_patient, training_record_proof_for_patient

BASE = "consent/base.html"


@login_required
@require_GET
def my_models(request: HttpRequest) -> HttpResponse:
    """The models the signed-in patient's records trained, newest first."""
    if not user_may_see_models_trained_on_own_records(request.user):
        return refused(request, "This page is for patients.", status=403, base=BASE)
    patient = patient_of(request.user)
    return render(
        request, "training/my_models.html", {"models": models_trained_on_patient(patient=patient), "patient": patient}
    )


@login_required
@require_GET
def my_model_proof(request: HttpRequest, run_id: UUID, record_id: UUID) -> HttpResponse:
    """The inclusion proof of one of the patient's records in a run's training set, as a JSON file."""
    if not user_may_see_models_trained_on_own_records(request.user):
        return refused(request, "This page is for patients.", status=403, base=BASE)
    back = (reverse("training:my-models"), "Models my records trained")
    try:
        document = training_record_proof_for_patient(
            patient=patient_of(request.user), run_id=run_id, record_id=record_id
        )
    except ApplicationError as error:
        return refused(request, error.message, status=error.status, base=BASE, back=back)
    return proof_download(document)


def proof_download(document: dict) -> HttpResponse:
    """A proof document as an attachment named after the model and the record it proves."""
    response = HttpResponse(json.dumps(document, indent=2, sort_keys=True) + "\n", content_type="application/json")
    name = f"training-proof-{document['about']['model'].replace('@', '-')}-{document['leaf']['record_id']}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
