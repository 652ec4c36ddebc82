"""The consent API: list, grant, read, revoke, history, FHIR export and import; the grantee directory.

Patients grant and revoke their own consents only; a grant naming another patient is refused with 403
before anything reaches the ledger, and another patient's consent is answered, for every method, exactly as
a consent that does not exist (404 not_found): the answer never tells that it exists. Clinicians list the
consents naming them; auditors list all. Every change is a ledger transaction; responses carry its id and block.
"""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.access import CanReadConsents, IsPatient, patient_of, user_may_change_consents_of
from consent.fhir import consent_to_fhir
from consent.filters import ConsentFilter
from consent.models import Consent
from consent.passkeys import signing_request
from consent.selectors import consent_history, consents_visible_to
from consent.serializers import (
    ConsentChangeSerializer,
    ConsentGrantSerializer,
    ConsentSerializer,
    GranteeSerializer,
    SignedDocumentSerializer,
    SigningRequestSerializer,
)
from consent.services import (
    consent_grant,
    consent_grant_document,
    consent_import_fhir,
    consent_revoke,
    consent_revoke_document,
)
from health_platform.api import VisibleListViewSet
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.parsers import LimitedFhirJSONParser, LimitedJSONParser
from health_platform.selectors import grantees_all
from health_platform.serializers import ERROR_RESPONSE

FHIR_JSON = "application/fhir+json"
_ERROR = ERROR_RESPONSE


@extend_schema_view(
    list=extend_schema(summary="List the consents visible to you (filters: status, grantee, purpose, category)"),
    retrieve=extend_schema(
        summary="Read one consent (mirror of the ledger)", responses={200: ConsentSerializer, 404: _ERROR}
    ),
)
class ConsentViewSet(VisibleListViewSet):
    model = Consent
    list_serializer = ConsentSerializer
    serializer_class = ConsentSerializer
    filterset_class = ConsentFilter
    lookup_field = "consent_id"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
    queryset = Consent.objects.none()

    def get_permissions(self):
        if self.action in ("create", "sign_request", "revoke", "revoke_sign_request", "import_fhir"):
            return [IsAuthenticated(), IsPatient()]
        return [IsAuthenticated(), CanReadConsents()]

    def visible_to(self, user: Any) -> QuerySet[Consent]:
        return consents_visible_to(user=user)

    def retrieve(self, request: Request, consent_id: str | None = None) -> Response:
        return Response(ConsentSerializer(self._visible(consent_id)).data)

    @extend_schema(
        summary="Ask what to sign to grant a consent (patients, for themselves)",
        request=ConsentGrantSerializer,
        responses={200: SigningRequestSerializer, 400: _ERROR, 403: _ERROR, 503: _ERROR},
        description="Checks the terms and answers the grant document with its WebAuthn challenge; writes nothing. "
        "Sign it with one of your passkeys on the ledger, then POST the document and the assertion to /api/consents/."
        " Error codes: unknown_grantee, grantee_inactive, unknown_purpose, unknown_category, invalid_period, "
        "period_in_past (400); permission_denied (403, e.g. another patient's pseudonym); ledger_unavailable (503).",
    )
    @action(detail=False, methods=["post"], url_path="sign-request")
    def sign_request(self, request: Request) -> Response:
        payload = ConsentGrantSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data: dict[str, Any] = payload.validated_data
        patient = patient_of(request.user)
        if patient is None or data.get("patient_pseudonym") not in (None, patient.pseudonym):
            raise PermissionDenied("A patient can grant consent only for themselves.")
        document = consent_grant_document(
            actor=request.user,
            patient=patient,
            grantee_id=data["grantee"],
            purposes=data["purposes"],
            categories=data["categories"],
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
        )
        return _signing_request(patient, document)

    @extend_schema(
        summary="Grant the consents of a document you signed with your passkey (patients, for themselves)",
        request=SignedDocumentSerializer,
        responses={201: ConsentSerializer(many=True), 400: _ERROR, 403: _ERROR, 409: _ERROR, 503: _ERROR},
        description="The body is a signing request's document (from /sign-request/ or a FHIR import) and the "
        "passkey's assertion over it. All of the document's grants are written in one ledger transaction, or none. "
        "Error codes: signature_required (400: no document and signature); invalid_document and the grant rules' "
        "codes (400); permission_denied (403); the ledger's refusals of the signature (403): signature_malformed, "
        "unknown_key, foreign_key, key_revoked, not_an_assertion, challenge_mismatch, origin_mismatch, rp_mismatch, "
        "user_not_verified, counter_regressed, signature_invalid, signature_stale, replayed; ledger_rejected (409); "
        "ledger_unavailable (503).",
    )
    def create(self, request: Request) -> Response:
        patient = patient_of(request.user)
        if patient is None:
            raise PermissionDenied("Only a patient can grant consent.")
        signed = _signed_document(request)
        consents = consent_grant(actor=request.user, patient=patient, **signed)
        return Response(ConsentSerializer(consents, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Ask what to sign to revoke a consent (its patient only)",
        request=None,
        responses={200: SigningRequestSerializer, 403: _ERROR, 404: _ERROR, 503: _ERROR},
    )
    @action(detail=True, methods=["post"], url_path="revoke/sign-request")
    def revoke_sign_request(self, request: Request, consent_id: str | None = None) -> Response:
        consent = self._own(request, consent_id)
        return _signing_request(consent.patient, consent_revoke_document(actor=request.user, consent=consent))

    @extend_schema(
        summary="Revoke a consent by a revocation document you signed (its patient only; idempotent)",
        description="The body is the revocation's signing request document and the passkey's assertion. Another "
        "patient's consent is not_found (404), as one that does not exist; permission_denied (403) for users who are "
        "not patients; signature_required (400); the ledger's refusals of the signature (403, as for a grant); "
        "ledger_unavailable (503).",
        request=SignedDocumentSerializer,
        responses={200: ConsentSerializer, 400: _ERROR, 403: _ERROR, 404: _ERROR, 503: _ERROR},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, consent_id: str | None = None) -> Response:
        consent = self._own(request, consent_id)
        signed = _signed_document(request)
        return Response(ConsentSerializer(consent_revoke(actor=request.user, consent=consent, **signed)).data)

    def _own(self, request: Request, consent_id: str | None) -> Consent:
        consent = Consent.objects.select_related("patient").filter(consent_id=consent_id).first()
        if consent is None or not user_may_change_consents_of(request.user, consent.patient):
            # One answer for both: a 403 here told that another patient's consent of that id exists.
            raise NotFound("No such consent.")
        return consent

    @extend_schema(
        summary="The consent's changes as committed on the ledger",
        responses={200: ConsentChangeSerializer(many=True), 404: _ERROR, 503: _ERROR},
    )
    @action(detail=True, methods=["get"], pagination_class=None)  # the whole history, as a plain list
    def history(self, request: Request, consent_id: str | None = None) -> Response:
        return Response(ConsentChangeSerializer(consent_history(consent=self._visible(consent_id)), many=True).data)

    @extend_schema(
        summary="Export as a FHIR R4 Consent", responses={(200, FHIR_JSON): OpenApiTypes.OBJECT, 404: _ERROR}
    )
    @action(detail=True, methods=["get"])
    def fhir(self, request: Request, consent_id: str | None = None) -> Response:
        return Response(consent_to_fhir(self._visible(consent_id)), content_type=FHIR_JSON)

    @extend_schema(
        summary="Import a FHIR R4 Consent (patients, for themselves): the grant document to sign, one grant per permit",
        request={FHIR_JSON: OpenApiTypes.OBJECT, "application/json": OpenApiTypes.OBJECT},
        responses={200: SigningRequestSerializer, 400: _ERROR, 403: _ERROR, 413: _ERROR, 503: _ERROR},
        description="Answers a signing request (as /sign-request/ does) whose document holds the grants, one per "
        "permit: an opt-in (a base permit, with deny exceptions "
        "naming purposes or categories it leaves out) makes one; an opt-out with exceptions (a base deny with "
        "nested permits) one per permit. All or none: nothing is written unless every provision maps. Error codes: "
        "fhir_unsupported (400) with detail.field naming the element by its path (e.g. provision.provision[1].action)"
        " and detail.reason, for what no grant can say; fhir_invalid (400) for invalid FHIR R4; not_a_consent (400);"
        " the grant rules' codes (unknown_grantee, grantee_inactive, unknown_purpose, unknown_category, "
        "invalid_period, period_in_past; 400) with detail.provision naming the provision; permission_denied (403, "
        "another patient's consent); payload_too_large (413); json_too_deep (400); ledger_unavailable (503). "
        "Signed and POSTed to /api/consents/, the document grants all of them in one ledger transaction, or none.",
    )
    @action(detail=False, methods=["post"], url_path="fhir", parser_classes=[LimitedFhirJSONParser, LimitedJSONParser])
    def import_fhir(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationFailed("The body must be a FHIR Consent resource.", code="not_a_consent")
        document = consent_import_fhir(actor=request.user, resource=dict(request.data))
        patient = patient_of(request.user)
        assert patient is not None  # consent_import_fhir refused anyone else
        return _signing_request(patient, document)

    def _visible(self, consent_id: str | None) -> Consent:
        consent = self.get_queryset().filter(consent_id=consent_id).first()
        if consent is None:
            raise NotFound("No such consent.")
        return consent


def _signing_request(patient: Any, document: dict[str, Any]) -> Response:
    asked = signing_request(patient=patient, document=document)
    return Response(SigningRequestSerializer(asked).data)


def _signed_document(request: Request) -> dict[str, Any]:
    """The body's document and signature; signature_required when a body has neither (the grant terms alone, as
    before signatures: the platform cannot grant them on the patient's behalf)."""
    if not isinstance(request.data, dict) or "document" not in request.data or "signature" not in request.data:
        raise ValidationFailed(
            "A change to a consent must be signed with your passkey: ask for a signing request first, sign its "
            "document, then send the document and the signature.",
            code="signature_required",
        )
    payload = SignedDocumentSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    return {"document": payload.validated_data["document"], "signature": payload.validated_data["signature"]}


class GranteeListView(APIView):
    """Clinicians and organisations a patient can grant consent to."""

    permission_classes = [IsAuthenticated, IsPatient]

    @extend_schema(summary="The grantee directory (patients)", responses={200: GranteeSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(GranteeSerializer(grantees_all(), many=True).data)
