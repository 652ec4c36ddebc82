"""Diagnostic models, analysis requests and their batches.

A request's batches move pending → gated → logged → encrypted → scored, each step a conditional
update from the previous state, so that a task delivered twice (or resumed after a worker died)
continues where the state says and never gates, logs or scores a batch twice. Ciphertexts and
contexts live in the blob store; rows hold their keys. No plaintext score is ever stored.
"""

import uuid

from django.conf import settings
from django.db import models


class DiagnosticModel(models.Model):
    """A registered model version and where its weights' hash is anchored on the ledger."""

    name = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    sha256 = models.CharField(max_length=64)
    anchor_tx_id = models.CharField(max_length=128)
    anchor_block = models.PositiveBigIntegerField(null=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    # A model trained on the platform (issue 18) keeps its weights document here, since no catalogue file holds it,
    # and the lineage its training run wrote on the ledger (run id, transaction, roots, counts, metrics...).
    weights_document = models.JSONField(null=True, blank=True)
    lineage = models.JSONField(default=dict, blank=True)
    # What has become of its training set since (training.standing): how many of its lineage's consents have been
    # revoked, how many of its records erased; and its retirement from new analyses once too many have. The
    # retirement is decided here first (retired_at: no new analysis uses it from then) and then written on the
    # ledger (retirement["tx_id"] stays empty until RetireModel has committed).
    since_trained = models.JSONField(default=dict, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    retirement = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name", "version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="diagnostic_model_unique")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class KeyMode(models.TextChoices):
    PORTAL = "portal", "Portal (the web process holds the sealed secret key)"
    REQUESTER = "requester", "Requester-held (only the requester can decrypt)"


class CohortKind(models.TextChoices):
    EXPLICIT = "explicit", "Listed pseudonymous patient ids"
    CONSENTED = "consented", "Everyone who consented to me for this purpose"


class AnalysisStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (AnalysisStatus.COMPLETED, AnalysisStatus.FAILED, AnalysisStatus.CANCELLED)


class AnalysisRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="analyses")
    grantee_id = models.CharField(max_length=80, help_text="the requester's ledger identity")
    organisation_grantee_id = models.CharField(max_length=80, blank=True, default="")
    model = models.ForeignKey(DiagnosticModel, on_delete=models.PROTECT, related_name="analyses")
    purpose = models.CharField(max_length=64)
    cohort_kind = models.CharField(max_length=16, choices=CohortKind.choices)
    cohort_pseudonyms = models.JSONField(default=list, blank=True)
    key_mode = models.CharField(max_length=16, choices=KeyMode.choices)
    public_context_key = models.CharField(max_length=64)
    compute_context_key = models.CharField(max_length=64)
    sealed_secret_context = models.BinaryField(null=True, blank=True)
    sealed_key_id = models.CharField(max_length=64, blank=True, default="")
    batch_size = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=AnalysisStatus.choices, default=AnalysisStatus.QUEUED)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    total_records = models.PositiveIntegerField(default=0)
    unknown_patients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Analysis {self.id}"


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Waiting for the gate"
    GATED = "gated", "Gated on the ledger"
    LOGGED = "logged", "Access logged on the ledger"
    ENCRYPTED = "encrypted", "Encrypted, waiting for compute"
    SCORED = "scored", "Scored"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class AnalysisBatch(models.Model):
    request = models.ForeignKey(AnalysisRequest, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    record_version_ids = models.JSONField()
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    gate_at = models.DateTimeField(null=True, blank=True)
    decisions = models.JSONField(default=list, blank=True)
    admitted_count = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=dict, blank=True)
    clipped_count = models.PositiveIntegerField(default=0)
    clipped_record_ids = models.JSONField(
        default=list,
        blank=True,
        help_text="records with a feature outside the model's documented range, clipped to it before encryption",
    )
    access_log_tx_id = models.CharField(max_length=128, blank=True, default="")
    access_log_block = models.PositiveBigIntegerField(null=True, blank=True)
    access_mirror_pending = models.BooleanField(
        default=False, help_text="its access events are on the ledger and not yet in the audit mirror"
    )
    column_keys = models.JSONField(default=list, blank=True)
    log_claimed_by = models.CharField(
        max_length=64, blank=True, default="", help_text="the task (message id) that took its access-log step"
    )
    compute_sent_at = models.DateTimeField(null=True, blank=True, help_text="when its compute order was claimed")
    compute_claimed_by = models.CharField(
        max_length=64, blank=True, default="", help_text="the task (message id) that claimed its compute order"
    )
    score_keys = models.JSONField(default=list, blank=True)
    skipped = models.JSONField(
        default=dict, blank=True, help_text="admitted records not encrypted: record id -> why (no values)"
    )
    # What became of the records the gate admitted, for the access log: set when the batch is scored, or when its
    # request fails or is cancelled after its access was logged; logged on the ledger once (outcome_tx_id).
    outcome = models.CharField(max_length=16, blank=True, default="")
    outcome_reason = models.CharField(max_length=32, blank=True, default="")
    outcome_tx_id = models.CharField(max_length=128, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["request_id", "index"]
        constraints = [models.UniqueConstraint(fields=["request", "index"], name="analysis_batch_unique")]

    def __str__(self) -> str:
        return f"Batch {self.index} of {self.request_id}"
