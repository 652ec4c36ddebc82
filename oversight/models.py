"""The misuse detector's versions and alerts, as the platform keeps them.

The ledger is the truth: each detector version's weights hash is anchored (AnchorModel, name "misuse-detector"),
each alert is raised on the ledger citing that version and hash, and each triage is a ledger transaction. These rows
are what the auditors' portal lists, with what the ledger must not hold: the reasons in words and the triage note
(sealed, its hash on the ledger).
"""

import uuid

from django.db import models

from health_platform.models import Judged

DETECTOR_NAME = "misuse-detector"


class Detector(models.Model):
    """One fitted version of the detector: the exact arrays that scored (a file, hashed), anchored on the ledger."""

    version = models.CharField(max_length=128, unique=True)
    weights_sha256 = models.CharField(max_length=64, unique=True)
    fitted_at = models.DateTimeField()
    history_from = models.DateField()
    history_until = models.DateField(help_text="exclusive")
    clinician_days = models.PositiveIntegerField(help_text="the history's rows it was fitted on")
    file = models.CharField(max_length=500, help_text="the fitted model (MisuseDetector.dumps) under the var folder")
    tx_id = models.CharField(max_length=128)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-fitted_at"]

    def __str__(self) -> str:
        return self.version


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONFIRMED = "confirmed", "Misuse confirmed"
    DISMISSED = "dismissed", "Dismissed"


class Alert(Judged):
    """A clinician-day the detector flagged (one alert per clinician and day, whichever run raised it first)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="the ledger's alert_id")
    grantee_id = models.CharField(max_length=80, help_text="the flagged clinician's id on the ledger")
    day = models.DateField()
    score = models.DecimalField(max_digits=12, decimal_places=6)
    reasons = models.JSONField(help_text="[{code, value, usual, text}], the strongest first")
    detector = models.ForeignKey(Detector, on_delete=models.PROTECT, related_name="alerts")
    run_id = models.CharField(max_length=64)
    raised_at = models.DateTimeField()
    tx_id = models.CharField(max_length=128)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-day", "-score"]
        constraints = [models.UniqueConstraint(fields=["grantee_id", "day"], name="one_alert_per_clinician_day")]
        indexes = [models.Index(fields=["verdict", "day"], name="alert_triage_queue")]

    def __str__(self) -> str:
        return f"Alert {self.id}"

    @property
    def status(self) -> str:
        """open until triaged, then the verdict (confirmed, dismissed)."""
        return self.verdict or AlertStatus.OPEN

    def get_status_display(self) -> str:
        return AlertStatus(self.status).label
