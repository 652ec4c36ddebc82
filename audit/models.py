"""The audit mirror of the ledger's access log, and the exports made from it.

The ledger is the truth. Every mirrored event names the batch, transaction and block that hold it
on the ledger, so that a search result or an export can be verified against the chain, event by
event; `manage.py rebuild_access_log_mirror` rebuilds the mirror from the ledger alone.
"""

import uuid

from django.conf import settings
from django.db import models

from chaincode.vocabulary import ACCESS_EVENT_FIELDS

EVENT_FIELDS = ACCESS_EVENT_FIELDS
# A mirrored event: its fields, then where the ledger holds it. Exports, the API and the mirror use this order.
COLUMNS = (*EVENT_FIELDS, "recorded_at", "batch_id", "position", "tx_id", "block_number")


class AccessEvent(models.Model):
    """One access event as logged on the ledger. Values the ledger holds as null are "" here."""

    event_id = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32)
    record_id = models.CharField(max_length=128, blank=True, default="")
    patient_pseudonym = models.CharField(max_length=64, blank=True, default="")
    grantee = models.CharField(max_length=80)
    purpose = models.CharField(max_length=64)
    request_id = models.CharField(max_length=128, blank=True, default="")
    consent_id = models.CharField(
        max_length=128, blank=True, default="", db_default="", help_text="the consent that allowed a read for treatment"
    )
    model_hash = models.CharField(max_length=64, blank=True, default="")
    category = models.CharField(max_length=32, blank=True, default="")
    decision = models.CharField(max_length=16, help_text="admit or refuse; an outcome's: computed or not_computed")
    reason = models.CharField(max_length=32, blank=True, default="")
    export_sha256 = models.CharField(max_length=64, blank=True, default="")
    recorded_at = models.DateTimeField()
    batch_id = models.CharField(max_length=200)
    position = models.PositiveIntegerField(help_text="the event's place in its ledger batch")
    tx_id = models.CharField(max_length=128)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    # Derived from the ledger's outcome events (not exported: the outcome events are): what became of an
    # admitted record access, "" until its outcome is logged.
    outcome = models.CharField(max_length=16, blank=True, default="", db_default="")
    outcome_reason = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        ordering = ["recorded_at", "batch_id", "position"]
        indexes = [
            models.Index(fields=["recorded_at", "batch_id", "position"], name="access_event_time"),
            models.Index(fields=["patient_pseudonym", "recorded_at"], name="access_event_patient"),
            models.Index(fields=["grantee", "recorded_at"], name="access_event_grantee"),
            models.Index(fields=["request_id", "recorded_at"], name="access_event_request"),
            models.Index(fields=["model_hash", "recorded_at"], name="access_event_model"),
            models.Index(fields=["batch_id", "position"], name="access_event_batch"),
        ]

    def __str__(self) -> str:
        return self.event_id


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSON = "json", "JSON"
    FHIR = "fhir", "FHIR AuditEvent (NDJSON)"


EXTENSIONS = {"csv": "csv", "json": "json", "fhir": "ndjson"}
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "fhir": "application/fhir+ndjson"}


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class AuditExport(models.Model):
    """An auditor's export: the file, its manifest and its verification against the ledger."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="audit_exports")
    actor_id = models.CharField(max_length=80, help_text="the auditor's identity on the ledger")
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    event_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    size_bytes = models.PositiveBigIntegerField(default=0)
    verification = models.JSONField(default=dict, blank=True)
    log_tx_id = models.CharField(max_length=128, blank=True, default="")
    log_block = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Export {self.id}"


def export_batch_id(export_id: object) -> str:
    """The ledger batch that records an export (one event: who exported, when, the file's hash)."""
    return f"export:{export_id}"


def export_event_id(export_id: object) -> str:
    return f"exp:{export_id}"
