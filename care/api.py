"""The care API: reads for treatment, emergency declarations (clinicians), their review (auditors), and a patient's
refusal of emergency access.

    GET  /api/care/patients/<pseudonym>/records/?category=   a read for treatment (clinicians)
    GET  /api/care/emergencies/                              the declarations one may see (own, about one, all)
    POST /api/care/emergencies/                              declare {identifier, reason, justification}
    GET  /api/care/emergencies/<id>/                         one declaration
    GET  /api/care/emergencies/<id>/records/?category=       a read under one's own declaration
    POST /api/care/emergencies/<id>/review/                  an auditor's {verdict, note}
    GET  /api/care/emergency-refusals/                       the patient's refusal of emergency access
    PUT  /api/care/emergency-refusals/                       set it {categories: [...]}
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import NOTE_MAX
from care import emergencies
from care.models import EmergencyDeclaration
from care.services import TreatmentRead, treatment_records_read
from chaincode.vocabulary import CATEGORIES, EMERGENCY_REASONS, EMERGENCY_VERDICTS
from health_platform.api import role_input
from health_platform.errors import PermissionDenied
from health_platform.roles import Role, user_has_role
from health_platform.serializers import ERROR_RESPONSE
from records.selectors import patient_of


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
    purpose = serializers.CharField()
    declaration_id = serializers.CharField(allow_null=True)
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)
    records = RecordReadSerializer(many=True)


def _read_response(read: TreatmentRead) -> Response:
    """200 with the admitted records when the ledger admits at least one; 403 with the refusal's reason as the code
    when it admits none (every record gated is logged either way)."""
    if read.records and not read.admitted:
        reason = next(iter(read.refusals))
        raise PermissionDenied(
            "The ledger refused this read.",
            code=reason,
            detail={"refusals": read.refusals, "read_id": read.read_id, "tx_id": read.tx_id},
        )
    return Response(TreatmentReadSerializer(read).data)


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
        """403 with the refusal's reason as the code (no_consent, consent_revoked, ...) when the ledger admits none;
        404 for a patient who never consented to the clinician."""
        read = treatment_records_read(
            clinician=request.user, patient_pseudonym=pseudonym, category=request.query_params.get("category", "")
        )
        return _read_response(read)


class EmergencySerializer(serializers.ModelSerializer):
    declaration_id = serializers.CharField(source="id")
    clinician = serializers.SerializerMethodField()
    patient_pseudonym = serializers.CharField(source="patient.pseudonym")
    reason_label = serializers.SerializerMethodField()
    active = serializers.SerializerMethodField()
    justification = serializers.SerializerMethodField()

    class Meta:
        model = EmergencyDeclaration
        fields = [
            "declaration_id",
            "clinician",
            "grantee_id",
            "patient_pseudonym",
            "reason",
            "reason_label",
            "justification",
            "justification_sha256",
            "declared_at",
            "expires_at",
            "active",
            "tx_id",
            "block_number",
            "verdict",
            "note_sha256",
            "judged_at",
            "verdict_tx_id",
            "verdict_block_number",
        ]

    def get_clinician(self, declaration: EmergencyDeclaration) -> str:
        return declaration.clinician_name

    def get_reason_label(self, declaration: EmergencyDeclaration) -> str:
        return EMERGENCY_REASONS.get(declaration.reason, declaration.reason)

    def get_active(self, declaration: EmergencyDeclaration) -> bool:
        return emergencies.is_active(declaration)

    def get_justification(self, declaration: EmergencyDeclaration) -> str | None:
        """Its clinician and the auditors read it; the patient sees the reason, not the clinician's words."""
        user = self.context["request"].user
        if declaration.clinician_id == user.pk or user_has_role(user, Role.AUDITOR):
            return emergencies.justification_open(declaration)
        return None


class DeclareSerializer(serializers.Serializer):
    identifier = serializers.CharField(max_length=512, help_text="the patient's identifier: system|value, or value")
    reason = serializers.ChoiceField(choices=list(EMERGENCY_REASONS))
    justification = serializers.CharField(max_length=emergencies.JUSTIFICATION_MAX)


class ReviewSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=list(EMERGENCY_VERDICTS))
    note = serializers.CharField(max_length=NOTE_MAX)


class RefusalsSerializer(serializers.Serializer):
    categories = serializers.ListField(child=serializers.ChoiceField(choices=list(CATEGORIES)), max_length=32)


class RefusalsAnswerSerializer(serializers.Serializer):
    patient_pseudonym = serializers.CharField()
    categories = serializers.ListField(child=serializers.CharField())
    changed_at = serializers.CharField(allow_null=True)
    tx_id = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True)


def _may_see_emergencies(user: Any) -> None:
    """Clinicians, auditors and patients see declarations (their own, all, about them); anyone else is refused."""
    staff = user_has_role(user, Role.CLINICIAN) or user_has_role(user, Role.AUDITOR)
    if not staff and patient_of(user) is None:
        raise PermissionDenied("Emergency declarations are for clinicians, auditors and their patients.")


class EmergencyListView(APIView):
    http_method_names = ["get", "post", "options"]

    @extend_schema(
        summary="List emergency declarations",
        parameters=[OpenApiParameter("reviewed", str, required=False, enum=["false"])],
        responses={200: EmergencySerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        """A clinician's own declarations, a patient's (about them), every one for an auditor; newest first.
        `?reviewed=false`: the auditor's review queue."""
        _may_see_emergencies(request.user)
        declarations = emergencies.emergencies_visible_to(user=request.user)
        if request.query_params.get("reviewed") == "false":
            declarations = declarations.filter(verdict="")
        page = declarations[:500]
        return Response(EmergencySerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        summary="Declare an emergency for one patient (clinicians)",
        request=DeclareSerializer,
        responses={201: EmergencySerializer, 404: ERROR_RESPONSE},
    )
    def post(self, request: Request) -> Response:
        """201 with the declaration (on the ledger); 404 unknown_patient; 400 with the field for bad input."""
        values = role_input(
            request, role=Role.CLINICIAN, refusal="Only clinicians declare emergencies.", serializer=DeclareSerializer
        )
        declaration = emergencies.emergency_declare(clinician=request.user, **values)
        return Response(
            EmergencySerializer(declaration, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class EmergencyDetailView(APIView):
    http_method_names = ["get", "options"]

    @extend_schema(summary="Read an emergency declaration", responses={200: EmergencySerializer})
    def get(self, request: Request, declaration_id: str) -> Response:
        _may_see_emergencies(request.user)
        declaration = emergencies.emergency_visible(user=request.user, declaration_id=declaration_id)
        return Response(EmergencySerializer(declaration, context={"request": request}).data)


class EmergencyRecordsView(APIView):
    """The declaration's patient's records of one category, read under it: gated and logged on the ledger."""

    http_method_names = ["get", "options"]

    @extend_schema(
        summary="Read a patient's records in an emergency (the declaring clinician)",
        parameters=[OpenApiParameter("category", str, required=True)],
        responses={200: TreatmentReadSerializer},
    )
    def get(self, request: Request, declaration_id: str) -> Response:
        """403 emergency_expired once the declaration is over, emergency_refused for a category the patient
        forbids; 404 for another clinician's declaration."""
        read = emergencies.emergency_records_read(
            clinician=request.user, declaration_id=declaration_id, category=request.query_params.get("category", "")
        )
        return _read_response(read)


class EmergencyReviewView(APIView):
    http_method_names = ["post", "options"]

    @extend_schema(
        summary="Review an emergency declaration (auditors)",
        request=ReviewSerializer,
        responses={200: EmergencySerializer},
    )
    def post(self, request: Request, declaration_id: str) -> Response:
        """400 already_reviewed for a second review; the verdict and the note's hash go on the ledger."""
        values = role_input(
            request, role=Role.AUDITOR, refusal="Only auditors review emergency access.", serializer=ReviewSerializer
        )
        declaration = emergencies.emergency_review(auditor=request.user, declaration_id=declaration_id, **values)
        return Response(EmergencySerializer(declaration, context={"request": request}).data)


class EmergencyRefusalsView(APIView):
    http_method_names = ["get", "put", "options"]

    @extend_schema(summary="Your refusal of emergency access (patients)", responses={200: RefusalsAnswerSerializer})
    def get(self, request: Request) -> Response:
        return Response(RefusalsAnswerSerializer(emergencies.emergency_refusals_of(user=request.user)).data)

    @extend_schema(
        summary="Set the data categories closed to emergency access (patients)",
        request=RefusalsSerializer,
        responses={200: RefusalsAnswerSerializer},
    )
    def put(self, request: Request) -> Response:
        """The whole set, on the ledger ([] opens every category again)."""
        if patient_of(request.user) is None:
            raise PermissionDenied("Only a patient sets their own refusal of emergency access.")
        payload = RefusalsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        values = dict(payload.validated_data)
        refusals = emergencies.emergency_refusals_set(user=request.user, categories=values["categories"])
        return Response(RefusalsAnswerSerializer(refusals).data)
