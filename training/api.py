"""The training API: a model steward's runs (list, request, read). Who may do what: training.access."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from health_platform.api import VisibleListViewSet
from health_platform.parsers import LimitedJSONParser
from health_platform.serializers import ERROR_RESPONSE, error_response, list_and_read_schema
from training.access import IsModelSteward
from training.models import TrainingRun
from training.selectors import training_run_get, training_run_overview, training_runs_of_steward
from training.serializers import TrainingRunCreateSerializer, TrainingRunDetailSerializer, TrainingRunSerializer
from training.services import training_run_request_offered

_ERROR = ERROR_RESPONSE
_NOT_FOUND = error_response("not_found: no such training run of yours")
REQUEST_MAX_BYTES = 4096  # four small fields: anything longer is not a run's terms


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
    permission_classes = [IsAuthenticated, IsModelSteward]
    parser_classes = [LimitedJSONParser]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.none()
    lookup_value_regex = r"[0-9A-Fa-f-]{32,36}"
    json_max_bytes = REQUEST_MAX_BYTES

    def visible_to(self, user: Any) -> QuerySet[TrainingRun]:
        return training_runs_of_steward(steward=user)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        run = training_run_get(viewer=request.user, run_id=pk)
        context = {"overview": training_run_overview(run=run)}
        return Response(TrainingRunDetailSerializer(run, context=context).data)

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
        run = training_run_request_offered(steward=request.user, **payload.validated_data)
        body = TrainingRunSerializer(run).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["links"]["self"]})
