"""The training API: a model steward's runs (list, request, read), and the patient's "Models my records trained"
(the models their records trained, and the inclusion proof of one record in one run's training set). Who may do
what: training.access; the portal's pages: training.views."""

import dataclasses
from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from health_platform.api import VisibleListViewSet
from health_platform.parsers import LimitedJSONParser
from health_platform.serializers import ERROR_RESPONSE, error_response, list_and_read_schema
from records.selectors import patient_of
from training.access import CanSeeModelsTrainedOnOwnRecords, IsModelSteward
from training.models import TrainingRun
from training.selectors import (
    models_trained_on_patient,
    training_record_proof_for_patient,
    training_run_get,
    training_run_overview,
    training_runs_of_steward,
)
from training.serializers import TrainingRunCreateSerializer, TrainingRunDetailSerializer, TrainingRunSerializer
from training.services import training_run_request

_ERROR = ERROR_RESPONSE
_NOT_FOUND = error_response("not_found: no such training run of yours")
REQUEST_MAX_BYTES = 4096  # seven small fields: anything longer is not a run's terms


@list_and_read_schema(
    listed="Your training runs, newest first",
    read="One of your training runs: its rounds, its organisations' counts and, once completed, its lineage",
    item=TrainingRunSerializer,
    detail=TrainingRunDetailSerializer,
    refusals={401: _ERROR, 403: _ERROR},
    not_found=_NOT_FOUND,
)
class TrainingRunViewSet(VisibleListViewSet):
    model = TrainingRun
    list_serializer = TrainingRunSerializer
    detail_serializer = TrainingRunDetailSerializer
    permission_classes = [IsAuthenticated, IsModelSteward]
    parser_classes = [LimitedJSONParser]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.none()
    lookup_value_regex = r"[0-9A-Fa-f-]{32,36}"
    json_max_bytes = REQUEST_MAX_BYTES

    def visible_to(self, user: Any) -> QuerySet[TrainingRun]:
        return training_runs_of_steward(steward=user)

    def visible_one(self, user: Any, pk: str | None) -> TrainingRun:
        return training_run_get(viewer=user, run_id=pk)

    def detail_context(self, request: Request, run: TrainingRun) -> dict[str, Any]:
        return {"overview": training_run_overview(run=run)}

    @extend_schema(
        summary="Request a training run of a model family over the records the organisations offer",
        description=(
            "Each organisation's custodian offers the current records of the family's data category whose patients "
            "hold a live training:<family> consent to it (each record by one organisation); the ledger's gate decides, "
            "round by round, which are used. Queued at once; follow it at links.self.\n\n"
            "Error codes: validation_failed (a field of the wrong JSON type: rounds a whole number; ridge and "
            "validation_fraction finite numbers; booleans and strings refused), unknown_fields, unknown_model, "
            "invalid_rounds, invalid_ridge, invalid_validation_fraction, no_records_offered, malformed_request, "
            "json_too_deep (400); permission_denied (403); payload_too_large (413)."
        ),
        request=TrainingRunCreateSerializer,
        responses={201: TrainingRunSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 413: _ERROR},
    )
    def create(self, request: Request) -> Response:
        payload = TrainingRunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        run = training_run_request(steward=request.user, **payload.validated_data)
        body = TrainingRunSerializer(run).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["links"]["self"]})


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
