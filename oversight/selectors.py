"""Reads of the oversight app: alerts for the auditors' portal and API."""

from typing import Any

from django.db.models import QuerySet

from health_platform.errors import PermissionDenied
from health_platform.roles import Role, user_has_role
from health_platform.selectors import grantee_get
from oversight.models import Alert, AlertStatus, Detector


def alerts_visible_to(*, user: Any, status: str = "") -> QuerySet[Alert]:
    """Every alert, for auditors only; open ones first, then the newest day and the highest score."""
    if not user_has_role(user, Role.AUDITOR):
        raise PermissionDenied("Misuse alerts are for auditors.")
    alerts = Alert.objects.select_related("detector", "judged_by")
    if status:
        alerts = alerts.filter(verdict="" if status == AlertStatus.OPEN else status)
    return alerts.order_by("verdict", "-day", "-score")


def open_alert_count() -> int:
    return Alert.objects.filter(verdict="").count()


def detectors() -> QuerySet[Detector]:
    return Detector.objects.all()


def clinician_name(grantee_id: str) -> str:
    known = grantee_get(grantee_id=grantee_id)
    return known.display_name if known else grantee_id
