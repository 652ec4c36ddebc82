"""The analytics API: model cards, and clinicians' analysis requests, progress and results.

Who may do what is decided in analytics.access, for the API and the portal alike.

Results are decrypted in the web process, on request, in portal mode only; in requester-held mode the
platform cannot decrypt them and offers the encrypted scores, which the requester's client decrypts.
"""

import base64
from typing import Any

import structlog
from django.conf import settings
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.access import CanReadModelCards, IsClinician, analysis_of_requester
from analytics.models import AnalysisRequest, AnalysisStatus
from analytics.registry import model_spec
from analytics.selectors import (
    analyses_of,
    analysis_encrypted_scores,
    analysis_progress,
    analysis_results,
    diagnostic_model_card,
    diagnostic_model_get,
    diagnostic_models_latest,
)
from analytics.serializers import (
    PUBLIC_CONTEXT_MAX_BASE64_CHARS,
    AnalysisCreateSerializer,
    AnalysisDetailSerializer,
    AnalysisRequestSerializer,
    EncryptedScoresSerializer,
    ModelCardSerializer,
    ResultsSerializer,
    public_context_decoded,
)
from analytics.services import analysis_request_cancel, analysis_request_create
from health_platform.api import VisibleListViewSet
from health_platform.errors import CHOICE_ERROR_MESSAGES, NotFound, PayloadTooLarge
from health_platform.parsers import LimitedJSONParser
from health_platform.serializers import ERROR_RESPONSE, error_response, list_and_read_schema

log = structlog.get_logger(__name__)

_ERROR = ERROR_RESPONSE
# Result rows in one API answer: a consented cohort has no upper size, and a million rows in one JSON document
# would cost the web process gigabytes to write.
RESULT_ROWS_PER_API_PAGE = 10_000


class ResultRowsPagination(PageNumberPagination):
    page_size = RESULT_ROWS_PER_API_PAGE


_NOT_FOUND = error_response("not_found: no such analysis of yours")


def request_max_bytes() -> int:
    """The largest request body the create endpoint reads: the largest cohort and public context, plus room.

    DRF parses JSON from the request stream, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not bound it:
    this endpoint checks the declared length itself, before anything is read.
    """
    configured = getattr(settings, "ANALYTICS_REQUEST_MAX_BYTES", None)
    if configured:
        return int(configured)
    return PUBLIC_CONTEXT_MAX_BASE64_CHARS + settings.ANALYTICS_MAX_COHORT * 70 + 64 * 1024


# --- model cards ---------------------------------------------------------------------------------


class ModelCardViewSet(viewsets.ViewSet):
    permission_classes = [IsAuthenticated, CanReadModelCards]
    lookup_field = "name"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"

    @extend_schema(
        summary="The registered diagnostic models (the version a new request uses), as model cards",
        responses={200: ModelCardSerializer(many=True), 403: _ERROR},
    )
    def list(self, request: Request) -> Response:
        cards = [diagnostic_model_card(model=model) for model in diagnostic_models_latest()]
        return Response(ModelCardSerializer(cards, many=True).data)

    @extend_schema(
        summary="One model card: features, metrics, weights SHA-256 and its anchor on the ledger",
        parameters=[OpenApiParameter("version", str, description="a registered version; the latest by default")],
        responses={200: ModelCardSerializer, 403: _ERROR, 404: _ERROR},
    )
    def retrieve(self, request: Request, name: str | None = None) -> Response:
        model = diagnostic_model_get(name=str(name), version=request.query_params.get("version"))
        if model is None:
            raise NotFound("No such model.")
        return Response(ModelCardSerializer(diagnostic_model_card(model=model)).data)


# --- analyses ------------------------------------------------------------------------------------


class AnalysisFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=AnalysisStatus.choices, error_messages=CHOICE_ERROR_MESSAGES)
    model = filters.CharFilter(field_name="model__name", help_text="model name")

    class Meta:
        model = AnalysisRequest
        fields = ["status", "model"]


@list_and_read_schema(
    listed="Your analysis requests, newest first (filters: status, model)",
    read="One of your analysis requests with its progress",
    item=AnalysisRequestSerializer,
    detail=AnalysisDetailSerializer,
    refusals={401: _ERROR, 403: _ERROR},
    not_found=_NOT_FOUND,
)
class AnalysisViewSet(VisibleListViewSet):
    model = AnalysisRequest
    list_serializer = AnalysisRequestSerializer
    detail_serializer = AnalysisDetailSerializer
    permission_classes = [IsAuthenticated, IsClinician]
    parser_classes = [LimitedJSONParser]
    serializer_class = AnalysisRequestSerializer
    filterset_class = AnalysisFilter
    queryset = AnalysisRequest.objects.none()
    lookup_value_regex = r"[0-9A-Fa-f-]{32,36}"

    @property
    def json_max_bytes(self) -> int:
        return request_max_bytes()

    def visible_to(self, user: Any) -> QuerySet[AnalysisRequest]:
        return analyses_of(user=user)

    def visible_one(self, user: Any, pk: str | None) -> AnalysisRequest:
        return analysis_of_requester(user=user, analysis_id=pk)

    def detail_context(self, request: Request, analysis: AnalysisRequest) -> dict[str, Any]:
        return {"progress": analysis_progress(request=analysis)}

    @extend_schema(
        summary="Request an analysis: a model over a cohort, in portal or requester-held key mode",
        description=(
            "The request is queued at once; follow it at links.self. Portal mode: the platform makes the keys "
            "and keeps the secret one sealed; results at links.results. Requester mode: upload the PUBLIC "
            "context only (base64, e.g. from `python -m analytics.client keygen`); the platform can never "
            "decrypt the scores, which you download at links.encrypted_scores.\n\n"
            "Error codes: validation_failed (shape), unknown_model, invalid_cohort (empty list, or ids that are "
            "not 64 lowercase hex: detail.indexes), cohort_too_large, invalid_batch_size, invalid_key_mode, "
            "public_context_missing, public_context_invalid, secret_key_uploaded (a context holding a secret "
            "key is refused and not stored), malformed_request (400); permission_denied, grantee_inactive (the "
            "requester is deactivated in the directory) (403); model_retired (the model's newest version is "
            "retired from new analyses until it is retrained: too many of its training consents withdrawn) (409); "
            "payload_too_large, public_context_too_large (413)."
        ),
        request=AnalysisCreateSerializer,
        responses={201: AnalysisRequestSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 409: _ERROR, 413: _ERROR},
    )
    def create(self, request: Request) -> Response:
        limit = request_max_bytes()
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(detail={"max_bytes": limit})
        payload = AnalysisCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data: dict[str, Any] = payload.validated_data
        analysis = analysis_request_create(
            requester=request.user,
            model_name=data["model"],
            cohort_kind=data["cohort"]["kind"],
            pseudonyms=data["cohort"].get("pseudonyms"),
            key_mode=data["key_mode"],
            public_context=public_context_decoded(data.get("public_context")),
            batch_size=data.get("batch_size"),
        )
        body = AnalysisRequestSerializer(analysis).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["links"]["self"]})

    @extend_schema(
        summary="Decrypted results (portal mode): score and label per pseudonymous record, summary, histogram",
        description="Decrypted in the web process for the requester only. Rows are those of the batches scored "
        f"so far: complete once status is completed; {RESULT_ROWS_PER_API_PAGE:,} a page, in the batches' order "
        "(?page=2 for the next; count, next and previous as in every list; a page past the last: not_found). The "
        "summary and the histogram are over every row. Requester-held keys: results_held_by_requester (400); "
        "download links.encrypted_scores instead.",
        parameters=[OpenApiParameter("page", int, description="the page of rows (1 by default)")],
        responses={200: ResultsSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 404: _NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Request, pk: str | None = None) -> Response:
        analysis = analysis_of_requester(user=request.user, analysis_id=pk)
        results = analysis_results(request=analysis, viewer=request.user)
        log.info("analysis_results_read", request_id=str(analysis.pk), user_id=request.user.pk, rows=len(results.rows))
        pages = ResultRowsPagination()
        rows = pages.paginate_queryset(results.rows, request, view=self)
        body = {
            "request_id": analysis.pk,
            "status": analysis.status,
            "model": {
                "name": results.model_name,
                "version": results.model_version,
                "kind": results.kind,
                "sha256": results.model_sha256,
            },
            "summary": results.summary(),
            "histogram": results.histogram(),
            "refusals": results.refusals,
            "count": len(results.rows),
            "next": pages.get_next_link(),
            "previous": pages.get_previous_link(),
            "rows": rows,
        }
        return Response(ResultsSerializer(body).data)

    @extend_schema(
        summary="Cancel an analysis of yours that has not finished",
        description="Nothing more of it is gated, encrypted or scored; what had been admitted is logged as not "
        "computed (request_cancelled). A finished analysis: analysis_finished (409).",
        request=None,
        responses={200: AnalysisDetailSerializer, 401: _ERROR, 403: _ERROR, 404: _NOT_FOUND, 409: _ERROR},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        analysis = analysis_request_cancel(
            requester=request.user, request=analysis_of_requester(user=request.user, analysis_id=pk)
        )
        return self.retrieve(request, pk=str(analysis.pk))

    @extend_schema(
        summary="The encrypted scores, for the holder of the secret key to decrypt (either key mode)",
        description="One CKKS ciphertext per chunk of up to 4096 records: slot i holds the score of "
        "record_ids[i] (logistic models: the logit). Chunks of the batches scored so far.",
        responses={200: EncryptedScoresSerializer, 401: _ERROR, 403: _ERROR, 404: _NOT_FOUND},
    )
    @action(detail=True, methods=["get"], url_path="encrypted-scores")
    def encrypted_scores(self, request: Request, pk: str | None = None) -> Response:
        analysis = analysis_of_requester(user=request.user, analysis_id=pk)
        scores = analysis_encrypted_scores(request=analysis, viewer=request.user)
        spec = model_spec(analysis.model)
        log.info(
            "analysis_encrypted_scores_read",
            request_id=str(analysis.pk),
            user_id=request.user.pk,
            chunks=len(scores["chunks"]),
        )
        body = {
            "request_id": analysis.pk,
            "status": analysis.status,
            "key_mode": analysis.key_mode,
            "public_context_sha256": analysis.public_context_key,
            "model": {
                **scores["model"],
                "positive_label": spec.positive_label,
                "negative_label": spec.negative_label,
            },
            "chunks": [
                {**chunk, "ciphertext": base64.b64encode(chunk["ciphertext"]).decode("ascii")}
                for chunk in scores["chunks"]
            ],
        }
        return Response(EncryptedScoresSerializer(body).data)
