"""The patient's API for "Models my records trained" (training.views is the portal's): the models their records
trained, and the inclusion proof of one record in one run's training set."""

import dataclasses
from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from health_platform.serializers import error_response
from records.selectors import patient_of
from training.access import CanSeeModelsTrainedOnOwnRecords
from training.selectors import models_trained_on_patient, training_record_proof_for_patient


def _patients_only(summary: str, description: str, **errors: OpenApiResponse) -> Any:
    """The schema of a GET the patient alone may send: a JSON object, or the errors named (status -> response)."""
    responses = {200: OpenApiTypes.OBJECT, 403: error_response("Only a patient sees the models their records trained.")}
    responses.update({int(status.removeprefix("status_")): answer for status, answer in errors.items()})
    return extend_schema(summary=summary, description=description, responses=responses)


class _PatientsOnly(APIView):
    permission_classes = [IsAuthenticated, CanSeeModelsTrainedOnOwnRecords]


class MyTrainedModelsView(_PatientsOnly):
    """GET: the models the signed-in patient's records trained."""

    @_patients_only(
        "The models the signed-in patient's records trained",
        "Newest first: each completed training run whose training set holds one of the patient's record versions "
        "(run id, model name and version, when, the lineage's ledger transaction) with those records (id, category, "
        "version, split: train or validation, the consent that admitted it and its status now: active, revoked or "
        "unknown). Never a clinical value.",
    )
    def get(self, request: Request) -> Response:
        models = models_trained_on_patient(patient=patient_of(request.user))
        return Response({"models": [{**dataclasses.asdict(m), "model": m.model} for m in models]})


class MyTrainedModelProofView(_PatientsOnly):
    """GET: the inclusion proof of one of the patient's records in a run's training set."""

    @_patients_only(
        "The inclusion proof of one of the signed-in patient's records in a training run's training set",
        "The proof document (format health-platform/merkle-inclusion-proof/v1) against the run's overall "
        "training-set root, which the ledger holds in the run's lineage transaction (about.lineage_tx_id). Check it "
        "offline: python -m chaincode.merkle verify proof.json. Error codes: not_found (404: no such run used this "
        "record of yours), lineage_mismatch (409: the kept training set no longer gives the ledger's root), "
        "ledger_unavailable (503).",
        status_404=error_response("No model was trained on this record of yours."),
        status_409=error_response("lineage_mismatch"),
    )
    def get(self, request: Request, run_id: UUID, record_id: UUID) -> Response:
        return Response(
            training_record_proof_for_patient(patient=patient_of(request.user), run_id=run_id, record_id=record_id)
        )
