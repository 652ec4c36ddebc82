"""The records API: ingest (custodians), list/read (patients: own; auditors, custodians: metadata),
integrity check. Clinicians never read records here."""

from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from health_platform.api import VisibleListViewSet
from health_platform.errors import NotFound, ValidationFailed
from health_platform.serializers import error_response, list_and_read_schema
from records.access import CanEraseOwnRecords, CanIngestRecords, CanReadRecords
from records.erasure import erasure_receipt, erasure_receipt_bytes, erasure_receipt_verify, patient_erase
from records.errors import BundleTooLarge, CiphertextInvalid, UnsupportedMediaType
from records.filters import RecordFilter
from records.models import ErasureState, Patient, PatientErasure, Record
from records.selectors import (
    record_get_visible,
    record_integrity_check,
    record_shows_clinical_content,
    record_version_document,
    records_visible_to,
)
from records.serializers import (
    IngestResponseSerializer,
    IntegritySerializer,
    RecordDetailSerializer,
    RecordSerializer,
)
from records.services import record_ingest

log = structlog.get_logger(__name__)

ACCEPTED_CONTENT_TYPES = ("application/fhir+json", "application/json")


class FhirJsonParser(JSONParser):
    """Advertises application/fhir+json in the schema. Ingest reads the raw body itself."""

    media_type = "application/fhir+json"


_ERRORS = {
    400: error_response("The bundle cannot be ingested (see `code`)."),
    403: error_response("Not allowed for this role."),
}


@list_and_read_schema(
    listed="List records (metadata; patients see only their own)",
    read="Read a record (the owning patient also gets the decrypted bundle)",
    item=RecordSerializer,
    detail=RecordDetailSerializer,
    refusals={403: _ERRORS[403]},
    not_found=error_response("No such record visible to you."),
)
class RecordViewSet(VisibleListViewSet):
    model = Record
    list_serializer = RecordSerializer
    detail_serializer = RecordDetailSerializer
    serializer_class = RecordSerializer
    filterset_class = RecordFilter
    parser_classes = [FhirJsonParser, JSONParser]
    queryset = Record.objects.none()  # replaced per user by get_queryset (schema generation needs a model)

    def get_permissions(self):
        if self.action == "create":
            return [IsAuthenticated(), CanIngestRecords()]
        return [IsAuthenticated(), CanReadRecords()]

    def visible_to(self, user: Any) -> QuerySet[Record]:
        return records_visible_to(user=user)

    def detail_context(self, request: Request, record: Record) -> dict[str, Any]:
        """The decrypted bundle of the newest version for whom may see clinical content (None else, or when its
        ciphertext does not open)."""
        context: dict[str, Any] = {"bundle": None}
        if record_shows_clinical_content(user=request.user, record=record):
            versions = list(record.versions.all())
            if versions:
                try:
                    context["bundle"] = record_version_document(record_version=versions[-1])
                except CiphertextInvalid:
                    log.warning("record_ciphertext_invalid", record_id=str(record.pk), version=versions[-1].version)
        return context

    @extend_schema(
        summary="Ingest a FHIR R4 Bundle (custodians)",
        description=(
            "A Bundle of type collection, batch or transaction holding Patient and Observation resources. "
            "One record per patient and observation category; each new version is encrypted at rest and "
            "its SHA-256 (RFC 8785 canonical form) anchored on the ledger. 201 when every record is "
            "anchored, 202 when some wait for the ledger (anchored=false). Error codes: payload_too_large, "
            "too_many_entries (413); malformed_json, json_too_deep, not_a_bundle, unsupported_bundle_type, "
            "empty_bundle, unsupported_resource_type, duplicate_resource_id, duplicate_patient, "
            "patient_identifier_missing, observation_subject_missing, observation_subject_unknown, "
            "observation_code_missing, observation_category_missing, observation_category_unknown, "
            "observation_category_ambiguous, fhir_invalid (400: detail.errors names each entry and field path, "
            "e.g. a JSON null or a valueQuantity.value that is not a number); unsupported_media_type (415)."
        ),
        request={"application/fhir+json": OpenApiTypes.OBJECT, "application/json": OpenApiTypes.OBJECT},
        responses={
            201: IngestResponseSerializer,
            202: IngestResponseSerializer,
            400: _ERRORS[400],
            403: _ERRORS[403],
            413: error_response("payload_too_large or too_many_entries"),
            415: error_response("unsupported_media_type"),
        },
    )
    def create(self, request: Request) -> Response:
        result = record_ingest(raw_body=_raw_body(request), actor=request.user)
        body = IngestResponseSerializer({"records": result.records}).data
        return Response(body, status=status.HTTP_201_CREATED if result.all_anchored else status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Check a record version's integrity against its ciphertext, its hash and the ledger",
        parameters=[OpenApiParameter("version", int, description="Version to check; the latest by default.")],
        responses={
            200: IntegritySerializer,
            403: _ERRORS[403],
            404: error_response("No such record or version visible to you."),
        },
    )
    @action(detail=True, methods=["get"])
    def integrity(self, request: Request, pk: str | None = None) -> Response:
        record = self.visible_one(request.user, pk)
        versions = list(record.versions.all())
        wanted = request.query_params.get("version")
        if wanted is not None:
            versions = [version for version in versions if str(version.version) == wanted]
        if not versions:
            raise NotFound("No such record version.")
        # The prefetched versions omit the ciphertext; the check reads it.
        version = record.versions.get(pk=versions[-1].pk)
        return Response(IntegritySerializer(record_integrity_check(record_version=version)).data)

    def visible_one(self, user: Any, pk: str | None) -> Record:
        try:
            record_id = UUID(str(pk))
        except ValueError:
            raise NotFound("No such record.") from None
        return record_get_visible(user=user, record_id=record_id)


def _raw_body(request: Request) -> bytes:
    """The request body as sent, with the size limit enforced before it is read whole.

    DRF's parsers never run on it: the depth limit must be checked before any JSON parsing, and
    the canonical hash is computed from this exact body's content.
    """
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType()
    too_large = BundleTooLarge(
        "The bundle is larger than the configured limit.",
        code="payload_too_large",
        detail={"max_bytes": settings.INGEST_MAX_BYTES},
    )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > settings.INGEST_MAX_BYTES:
        raise too_large
    try:
        return request.body
    except RequestDataTooBig:
        raise too_large from None


class PatientErasureView(APIView):
    """The signed-in patient's erasure: GET its receipt, POST to erase (body {"confirm": "erase"})."""

    permission_classes = [IsAuthenticated, CanEraseOwnRecords]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="The signed-in patient's erasure receipt",
        responses={200: OpenApiTypes.OBJECT, 403: _ERRORS[403], 404: error_response("No erasure on the ledger yet.")},
    )
    def get(self, request: Request) -> Response:
        return Response(erasure_receipt(erasure=_erasure_on_ledger(request)))

    @extend_schema(
        summary="Erase the signed-in patient's data (their key, their ciphertexts; their anchors marked on the ledger)",
        description=(
            'Body {"confirm": "erase"}. 201 with the receipt; 200 with it when the erasure was already done. A '
            "half-done erasure (the ledger holds it, the data is not yet destroyed) is finished by asking again. "
            "Error codes: confirmation_required (400), analysis_in_progress (409: an analysis using the records is "
            "running; ask again when it has finished), ledger_unavailable (503: nothing was erased)."
        ),
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            201: OpenApiTypes.OBJECT,
            400: error_response("confirmation_required"),
            403: _ERRORS[403],
            409: error_response("analysis_in_progress"),
            503: error_response("ledger_unavailable"),
        },
    )
    def post(self, request: Request) -> Response:
        patient = _erasing_patient(request)
        if not isinstance(request.data, dict) or request.data.get("confirm") != "erase":
            raise ValidationFailed('Send {"confirm": "erase"} to erase your data.', code="confirmation_required")
        already = PatientErasure.objects.filter(patient=patient, state=ErasureState.DONE).exists()
        erasure = patient_erase(actor=request.user, patient=patient)
        return Response(
            erasure_receipt(erasure=erasure), status=status.HTTP_200_OK if already else status.HTTP_201_CREATED
        )


class PatientErasureVerifyView(APIView):
    """The signed-in patient's receipt, checked against the ledger now."""

    permission_classes = [IsAuthenticated, CanEraseOwnRecords]

    @extend_schema(
        summary="Check the signed-in patient's erasure receipt against the ledger",
        responses={200: OpenApiTypes.OBJECT, 403: _ERRORS[403], 404: error_response("No erasure on the ledger yet.")},
    )
    def get(self, request: Request) -> Response:
        erasure = _erasure_on_ledger(request)
        return Response(erasure_receipt_verify(raw=erasure_receipt_bytes(erasure=erasure)).as_dict())


def _erasing_patient(request: Request) -> Patient:
    patient = Patient.objects.filter(user_id=int(request.user.pk or 0)).first()
    if patient is None:
        raise NotFound("Your account is not linked to a patient.")
    return patient


def _erasure_on_ledger(request: Request) -> PatientErasure:
    """The signed-in patient's erasure, once the ledger holds it; NotFound before."""
    erasure = PatientErasure.objects.filter(patient=_erasing_patient(request)).exclude(state=ErasureState.REQUESTED)
    found = erasure.first()
    if found is None:
        raise NotFound("No erasure on the ledger yet.")
    return found
