"""The clinician's API for reads for treatment: GET /api/care/patients/<pseudonym>/records/?category=<code>."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from care.services import treatment_records_read
from health_platform.errors import PermissionDenied


class RecordReadSerializer(serializers.Serializer):
    record_id = serializers.CharField()
    category = serializers.CharField()
    version = serializers.IntegerField()
    decision = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    consent_id = serializers.CharField(allow_null=True)
    observations = serializers.ListField(child=serializers.DictField(), allow_null=True)


class TreatmentReadSerializer(serializers.Serializer):
    read_id = serializers.CharField()
    patient_pseudonym = serializers.CharField()
    category = serializers.CharField()
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)
    records = RecordReadSerializer(many=True)


class TreatmentRecordsView(APIView):
    """A patient's records of one category, read for treatment: each gated and logged on the ledger.

    GET only: a HEAD would be a read logged on the ledger with nothing shown."""

    http_method_names = ["get", "options"]

    @extend_schema(
        summary="Read a patient's records for treatment (clinicians)",
        parameters=[OpenApiParameter("category", str, required=True)],
        responses={200: TreatmentReadSerializer},
    )
    def get(self, request: Request, pseudonym: str) -> Response:
        """200 with the admitted records' observations when the ledger admits at least one; 403 with the refusal's
        reason as the code (no_consent, consent_revoked, ...) when it admits none; 404 for a patient who never
        consented to the clinician. Every record gated is logged on the ledger either way."""
        read = treatment_records_read(
            clinician=request.user, patient_pseudonym=pseudonym, category=request.query_params.get("category", "")
        )
        if read.records and not read.admitted:
            reason = next(iter(read.refusals))
            raise PermissionDenied(
                "The ledger refused this read.",
                code=reason,
                detail={"refusals": read.refusals, "read_id": read.read_id, "tx_id": read.tx_id},
            )
        return Response(TreatmentReadSerializer(read).data)
