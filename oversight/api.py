"""The auditors' API for misuse alerts.

GET  /api/oversight/alerts/[?status=open|confirmed|dismissed]   alerts, open first
GET  /api/oversight/alerts/<id>/                                 one alert: reasons, detector, ledger
POST /api/oversight/alerts/<id>/triage/                          {verdict: confirmed|dismissed, note}
POST /api/oversight/scoring-runs/                                score now {until?: YYYY-MM-DD, days?: 1..31}
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import NOTE_MAX
from chaincode.vocabulary import ALERT_VERDICTS
from health_platform.api import role_input
from health_platform.errors import ValidationFailed
from health_platform.roles import Role
from oversight import selectors, services, tasks
from oversight.models import Alert, AlertStatus


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    value = serializers.FloatField()
    usual = serializers.FloatField()
    text = serializers.CharField()


class AlertSerializer(serializers.ModelSerializer):
    alert_id = serializers.CharField(source="id")
    clinician = serializers.SerializerMethodField()
    reasons = ReasonSerializer(many=True)
    detector_version = serializers.CharField(source="detector.version")
    detector_sha256 = serializers.CharField(source="detector.weights_sha256")
    detector_tx_id = serializers.CharField(source="detector.tx_id")
    score = serializers.FloatField()
    status = serializers.CharField()

    class Meta:
        model = Alert
        fields = [
            "alert_id",
            "grantee_id",
            "clinician",
            "day",
            "score",
            "reasons",
            "detector_version",
            "detector_sha256",
            "detector_tx_id",
            "raised_at",
            "tx_id",
            "block_number",
            "status",
            "note_sha256",
            "judged_at",
            "verdict_tx_id",
            "verdict_block_number",
        ]

    def get_clinician(self, alert: Alert) -> str:
        return selectors.clinician_name(alert.grantee_id)


class TriageSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=list(ALERT_VERDICTS))
    note = serializers.CharField(max_length=NOTE_MAX)


class ScoringRunSerializer(serializers.Serializer):
    until = serializers.DateField(required=False)
    days = serializers.IntegerField(required=False, min_value=1, max_value=31)


class AlertListView(APIView):
    http_method_names = ["get", "options"]

    @extend_schema(
        summary="List misuse alerts (auditors)",
        parameters=[OpenApiParameter("status", str, required=False, enum=list(AlertStatus.values))],
        responses={200: AlertSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in AlertStatus.values:
            raise ValidationFailed("Unknown alert status.", code="invalid_status", detail={"field": "status"})
        alerts = selectors.alerts_visible_to(user=request.user, status=wanted)[:500]
        return Response(AlertSerializer(alerts, many=True).data)


class AlertDetailView(APIView):
    http_method_names = ["get", "options"]

    @extend_schema(summary="Read a misuse alert (auditors)", responses={200: AlertSerializer})
    def get(self, request: Request, alert_id: str) -> Response:
        selectors.alerts_visible_to(user=request.user)
        return Response(AlertSerializer(services.alert_get(alert_id=alert_id)).data)


class AlertTriageView(APIView):
    http_method_names = ["post", "options"]

    @extend_schema(
        summary="Triage a misuse alert (auditors)", request=TriageSerializer, responses={200: AlertSerializer}
    )
    def post(self, request: Request, alert_id: str) -> Response:
        """400 already_triaged for a second verdict; the verdict and the note's hash go on the ledger."""
        values = role_input(
            request, role=Role.AUDITOR, refusal="Only auditors triage alerts.", serializer=TriageSerializer
        )
        alert = services.alert_triage(auditor=request.user, alert_id=alert_id, **values)
        return Response(AlertSerializer(alert).data)


class ScoringRunView(APIView):
    http_method_names = ["post", "options"]

    @extend_schema(summary="Score the access log now (auditors)", request=ScoringRunSerializer, responses={202: None})
    def post(self, request: Request) -> Response:
        """202: queued for the custodian workers (the beat also scores yesterday and today, every
        OVERSIGHT_SCORE_SECONDS)."""
        values = role_input(
            request, role=Role.AUDITOR, refusal="Only auditors ask for a scoring run.", serializer=ScoringRunSerializer
        )
        until = values.get("until")
        services.scoring_window_check(until=until, days=values.get("days", 2))
        queued = tasks.misuse_score_run.delay(until=until.isoformat() if until else None, days=values.get("days", 2))
        return Response({"task_id": queued.id}, status=status.HTTP_202_ACCEPTED)
