"""The audit API: search the access log, export it, download and verify exports, and the ledger view.

Who may do what is decided in audit.selectors (`access_events_visible_to`, `audit_exports_of`,
`ledger_recent_blocks`) and audit.services (`audit_export_create`): an auditor everything; a patient
the events about their own records and nothing else; anyone else 403 audit_forbidden; anonymous 401.
The permission is checked before the request's parameters are read, so that a refused caller learns
nothing from validation errors. An export id that is not an export is 404 (exports are shared by the
auditors, who form one team; see `audit_exports_of`).

Nothing here returns a clinical value or a score: events hold ids, codes, pseudonyms, hashes and times.
"""

from typing import Any

import structlog
from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.access import auditor_required
from audit.copies import copy_verify
from audit.exports import EXTENSIONS, export_file_response
from audit.filters import SEARCH_FIELDS, AccessEventFilter, SearchTerms
from audit.manifests import MAX_MANIFEST_BYTES, ExportManifest, invalid_manifest, manifest_of_export, manifest_read
from audit.models import AccessEvent, AuditExport, ExportStatus
from audit.selectors import (
    AccessEventFilters,
    access_events_search,
    access_events_visible_to,
    audit_export_manifest,
    audit_export_manifest_name,
    audit_exports_of,
    export_of_auditor,
    ledger_recent_blocks,
)
from audit.serializers import (
    AccessEventSerializer,
    AuditExportSerializer,
    ExportCreateSerializer,
    LedgerBlocksQuerySerializer,
    LedgerBlocksSerializer,
    VerificationResultSerializer,
    VerifyUploadSerializer,
)
from audit.services import audit_export_create
from health_platform.errors import (
    Conflict,
    PayloadTooLarge,
    ValidationFailed,
)
from health_platform.parsers import LimitedJSONParser
from health_platform.serializers import ERROR_RESPONSE, error_response, list_and_read_schema

log = structlog.get_logger(__name__)

_ERROR = ERROR_RESPONSE
_FORBIDDEN = error_response("audit_forbidden: not an auditor (or patient, for events)")
_NOT_FOUND = error_response("not_found: no such export")
_NOT_READY = error_response("export_not_ready: the export is pending or failed")
_MULTIPART_ROOM = 64 * 1024
DEFAULT_VERIFY_MAX_BYTES = 200 * 1024 * 1024


def verify_max_bytes() -> int:
    """The largest copy /api/audit/verify/ accepts (settings.AUDIT_VERIFY_MAX_BYTES, 200 MB by default)."""
    return int(getattr(settings, "AUDIT_VERIFY_MAX_BYTES", DEFAULT_VERIFY_MAX_BYTES))


def validated_search(data: Any) -> SearchTerms:
    """The search in `data` (query or body), or 400 validation_failed naming each bad field."""
    filterset = AccessEventFilter(data=data, queryset=AccessEvent.objects.none())
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return filterset.terms()


class FirstRendererNegotiation(BaseContentNegotiation):
    """For file downloads: whatever the client accepts, errors are rendered as JSON (the file is not rendered)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# --- events --------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Search the access log (auditors: every event; patients: events about their own records)",
        description="Every access to a record, admitted or refused, and every export, each with the ledger "
        "transaction and block that hold it. Newest first unless ordering=recorded_at. Bad parameters: "
        "validation_failed (400) with detail naming each field.",
        responses={200: AccessEventSerializer(many=True), 400: _ERROR, 401: _ERROR, 403: _FORBIDDEN},
    ),
)
class AccessEventViewSet(viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated]
    serializer_class = AccessEventSerializer
    filterset_class = AccessEventFilter
    queryset = AccessEvent.objects.none()

    def list(self, request: Request) -> Response:
        access_events_visible_to(viewer=request.user)  # 403 before the query is read
        terms = validated_search(request.query_params)
        events = access_events_search(viewer=request.user, filters=terms.filters, newest_first=terms.newest_first)
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AccessEventSerializer(page, many=True).data)


# --- exports -------------------------------------------------------------------------------------


@list_and_read_schema(
    listed="The audit team's exports, newest first",
    read="One export: status, count, SHA-256 of the file, verification, and its own ledger entry",
    item=AuditExportSerializer,
    refusals={401: _ERROR, 403: _FORBIDDEN},
    not_found=_NOT_FOUND,
)
class AuditExportViewSet(viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated]
    parser_classes = [LimitedJSONParser, FormParser, MultiPartParser]
    serializer_class = AuditExportSerializer
    filter_backends: list[Any] = []
    queryset = AuditExport.objects.none()
    lookup_value_regex = r"[0-9A-Fa-f-]{32,36}"

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(audit_exports_of(viewer=request.user))
        return self.get_paginated_response(AuditExportSerializer(page, many=True).data)

    @extend_schema(
        summary="Export the access log (auditors): CSV, JSON or FHIR AuditEvent NDJSON",
        description="The body holds `format` and the search's filters (patient, grantee, request, model, decision, "
        "reason, kind, since, until). The export is written by a worker: follow links.self until status is "
        "completed, then download links.file. Exporting is itself logged on the ledger. Error codes: "
        "unknown_export_format, validation_failed (400); audit_forbidden (403).",
        request=ExportCreateSerializer,
        parameters=[
            OpenApiParameter(name, str, description=f"filter {name}, as for the search") for name in SEARCH_FIELDS
        ],
        responses={202: AuditExportSerializer, 400: _ERROR, 401: _ERROR, 403: _FORBIDDEN},
    )
    def create(self, request: Request) -> Response:
        audit_exports_of(viewer=request.user)  # 403 before the body is read
        payload = ExportCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        terms = validated_search(request.data)
        export = audit_export_create(
            requester=request.user, format=payload.validated_data["format"], filters=terms.filters
        )
        export.refresh_from_db()  # without a request transaction the task may have run already
        body = AuditExportSerializer(export).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["links"]["self"]})

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(AuditExportSerializer(export_of_auditor(user=request.user, export_id=pk)).data)

    @extend_schema(
        summary="The export's manifest: filters, count, time, file name, media type, SHA-256, verification",
        description="Save it beside the export's file as <file name>.manifest.json (the name Content-Disposition "
        "gives): `manage.py verify_access_log FILE` finds it there, and POST /api/audit/verify/ takes it as "
        "`manifest`, to check a copy's completeness.",
        responses={200: OpenApiTypes.OBJECT, 401: _ERROR, 403: _FORBIDDEN, 404: _NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def manifest(self, request: Request, pk: str | None = None) -> Response:
        export = export_of_auditor(user=request.user, export_id=pk)
        name = audit_export_manifest_name(export=export)
        return Response(
            audit_export_manifest(export=export), headers={"Content-Disposition": f'inline; filename="{name}"'}
        )

    @extend_schema(
        summary="Download the export's file (attachment; its SHA-256 is the manifest's)",
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,  # the JSON export is one document: {"events": [...]}
            (200, "application/fhir+ndjson"): OpenApiTypes.BINARY,
            401: _ERROR,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            409: _NOT_READY,
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FirstRendererNegotiation)
    def file(self, request: Request, pk: str | None = None) -> FileResponse:
        return export_file_response(export=export_of_auditor(user=request.user, export_id=pk), user=request.user)


# --- verification of a copy ----------------------------------------------------------------------


class VerifyCopyView(APIView):
    """Check a copy of an export, as handed over, against the ledger: event by event and for completeness."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Verify a copy of an export against the ledger (auditors)",
        description="Multipart: `file` and its `format` (csv, json, fhir), with the export's manifest as `manifest` "
        "(the JSON of /api/audit/exports/{id}/manifest/) or the export's id as `export` (the platform then uses "
        "its own manifest). The manifest is checked against the ledger's entry of the export (the file's SHA-256) "
        "and the platform's record (filters, count, time); the copy must then hold exactly the ledger's events of "
        "the export, unchanged and in order: each problem names the event (missing_from_copy, out_of_scope, "
        "reordered, changed with its fields, absent_from_ledger, duplicated...), never values. Without a manifest "
        "the answer is 200 with completeness_checked false and ok false (the search's filters, if sent, are then "
        "the scope, up to now or their `until`). Error codes: unknown_export_format, invalid_export_file (names the "
        "line), invalid_manifest (names the fields), validation_failed (400); audit_forbidden (403); not_found "
        "(404, unknown export); export_not_ready (409); payload_too_large (413); ledger_unavailable (503).",
        request={"multipart/form-data": VerifyUploadSerializer},
        responses={
            200: VerificationResultSerializer,
            400: _ERROR,
            401: _ERROR,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            409: _NOT_READY,
            413: _ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        auditor_required(request.user, "Only auditors can verify copies of the access log.")
        limit = verify_max_bytes()
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit + MAX_MANIFEST_BYTES + _MULTIPART_ROOM:
            raise PayloadTooLarge(detail={"max_bytes": limit})
        payload = VerifyUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data: dict[str, Any] = payload.validated_data
        upload = data["file"]
        if upload.size > limit:
            raise PayloadTooLarge(detail={"max_bytes": limit})
        format = data["format"]
        if format not in EXTENSIONS:
            raise ValidationFailed(
                "Choose the copy's format: csv, json or fhir.", code="unknown_export_format", detail={"field": "format"}
            )
        manifest = uploaded_manifest(data.get("manifest"))
        filters: AccessEventFilters | None = None
        if data.get("export") is not None:
            export = export_of_auditor(user=request.user, export_id=data["export"])
            if export.status != ExportStatus.COMPLETED:
                raise Conflict(
                    "The export has not completed: there is nothing to verify a copy against yet.",
                    code="export_not_ready",
                    detail={"status": export.status},
                )
            if manifest is None:
                manifest = manifest_of_export(export=export)
            elif manifest.export_id != export.id:
                raise invalid_manifest("the manifest is another export's than the one named", field="export_id")
        elif manifest is None and any(request.data.get(name) for name in SEARCH_FIELDS):
            filters = validated_search(request.data).filters
        body = copy_verify(stream=upload.file, format=format, manifest=manifest, filters=filters)
        log.info(
            "audit_copy_verified",
            user_id=request.user.pk,
            format=format,
            export_id=body["export_id"],
            checked=body["checked"],
            problems=body["problem_count"],
            completeness_checked=body["completeness_checked"],
            ok=body["ok"],
        )
        return Response(VerificationResultSerializer(body).data)


def uploaded_manifest(upload: Any) -> ExportManifest | None:
    """The manifest sent with the copy, if any; 413 past MAX_MANIFEST_BYTES, invalid_manifest if it is not one."""
    if upload is None:
        return None
    if upload.size > MAX_MANIFEST_BYTES:
        raise PayloadTooLarge(detail={"field": "manifest", "max_bytes": MAX_MANIFEST_BYTES})
    upload.seek(0)
    return manifest_read(upload.read(MAX_MANIFEST_BYTES + 1))


# --- the ledger view -----------------------------------------------------------------------------


class LedgerBlocksView(APIView):
    """Recent blocks and their transactions: ids, hashes, status, contract and function; no payloads."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Recent ledger blocks, newest first (auditors)",
        parameters=[LedgerBlocksQuerySerializer],
        responses={200: LedgerBlocksSerializer, 400: _ERROR, 401: _ERROR, 403: _FORBIDDEN, 503: _ERROR},
    )
    def get(self, request: Request) -> Response:
        auditor_required(request.user, "Only auditors can read the ledger view.")
        query = LedgerBlocksQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit: int = query.validated_data["limit"]
        blocks = ledger_recent_blocks(viewer=request.user, limit=limit, before=query.validated_data.get("before"))
        next_before = blocks[-1].number if len(blocks) == limit and blocks and blocks[-1].number > 0 else None
        return Response(LedgerBlocksSerializer({"blocks": blocks, "next_before": next_before}).data)
