"""Training runs and their rounds (issue 18).

A run is asked for by a model steward, over the records of several organisations consented for training one model
family. Its keys: the steward's CKKS secret context sealed under the key vault (as an analysis keeps its requester's),
the public context every organisation encrypts its update with, the parameters-only context the aggregator adds
ciphertexts with. Its manifest is the ordered leaves of each organisation's training set and consents
(training.lineage): what the roots on the ledger are computed over, kept so that proofs can be produced later.
No plaintext update, record or label is ever stored.
"""

import uuid

from django.conf import settings
from django.db import models


class TrainingRun(models.Model):
    """One training run: what was asked (family, kind, hyperparameters, rounds, the organisations' candidates), how it
    went (status, per-organisation counts, failure code), and what it left (manifest, lineage transaction, weights)."""

    class Status(models.TextChoices):
        """queued until a worker takes it (again queued while it waits for the ledger to come back); running its
        rounds; completed once its lineage is on the ledger and its model registered; failed (failure_code says why)
        when an organisation or the aggregator failed, the ledger refused, or the ledger stayed away past the run's
        deadline."""

        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    steward = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_runs")
    model_family = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, help_text="linear or logistic")
    hyperparameters = models.JSONField(default=dict)
    rounds_requested = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    organisations = models.JSONField(default=dict, help_text="organisation grantee id -> its candidate version ids")
    invited = models.JSONField(
        default=list,
        help_text="the organisations whose own platform instances take part (training.participation): their records"
        " are offered, gated and logged there, never here",
    )
    organisation_counts = models.JSONField(
        default=dict, help_text="organisation -> {admitted, refused: {reason: n}, skipped: {reason: n}}"
    )
    manifest = models.JSONField(default=dict, help_text="organisation -> ordered training-set and consent leaves")
    public_context_key = models.CharField(max_length=128)
    compute_context_key = models.CharField(max_length=128)
    sealed_key_id = models.CharField(max_length=64)
    sealed_secret_context = models.BinaryField()
    lineage_tx_id = models.CharField(max_length=128, blank=True, default="")
    lineage_block = models.PositiveBigIntegerField(null=True)
    weights_sha256 = models.CharField(max_length=64, blank=True, default="")
    model_name = models.CharField(max_length=64, blank=True, default="")
    model_version = models.CharField(max_length=32, blank=True, default="")
    outcome = models.JSONField(
        default=dict,
        help_text="the federation's result, kept before the lineage is written so that a run the ledger interrupted"
        " there resumes without training again: {weights, bias, metrics, round_hashes} (model parameters only)",
    )
    attempts = models.PositiveIntegerField(default=0, help_text="times the ledger did not answer and the run waited")
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, help_text="when a worker last took it (queued -> running)")
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training run {self.pk}"


TrainingStatus = TrainingRun.Status


class TrainingRound(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="rounds")
    index = models.PositiveIntegerField(help_text="1-based, as Flower counts rounds")
    status = models.CharField(max_length=16, default="aggregated", help_text="aggregated: the steward opened its sum")
    aggregate_sha256 = models.CharField(max_length=64, help_text="training.maths.aggregate_sha256 of the opened sum")
    contributions = models.JSONField(default=dict, help_text="organisation -> records its update covered")

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="training_round_unique")]

    def __str__(self) -> str:
        return f"round {self.index} of training run {self.run_id}"


class TrainingSetEntry(models.Model):
    """One record version in a completed run's training set: the index that finds a patient's models without reading
    every run's manifest. Written with the run's completion, in the same transaction (training.rounds), from the
    manifest, which stays the truth the roots are computed over; `position` is the record's leaf index in the run's
    overall training-set tree (training.lineage.overall_entries), the index its inclusion proof names.

    At an invited organisation's instance (one platform instance per organisation) the entry is of its participation
    instead, written when it completes: `position` is then the leaf index in that organisation's own tree, whose root
    the lineage on the ledger holds among its organisations' (the steward's instance alone has the whole run)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="entries", null=True)
    participation = models.ForeignKey(
        "TrainingParticipation",
        on_delete=models.CASCADE,
        related_name="entries",
        null=True,
        help_text="or: this instance's part of another instance's run (position: in its organisation's tree)",
    )
    record = models.ForeignKey("records.Record", on_delete=models.PROTECT, related_name="+")
    record_version = models.PositiveIntegerField()
    position = models.PositiveIntegerField(help_text="leaf index in the run's overall training-set tree")
    organisation = models.CharField(max_length=80, help_text="org:<slug>: whose custodian offered the record")
    consent_id = models.CharField(max_length=128, help_text="the consent that admitted the record")
    split = models.CharField(max_length=16, help_text="train or validation")

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="training_set_entry_position_unique"),
            models.UniqueConstraint(fields=["run", "record"], name="training_set_entry_record_unique"),
            models.UniqueConstraint(
                fields=["participation", "position"], name="training_set_entry_participation_position_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(run__isnull=True) ^ models.Q(participation__isnull=True),
                name="training_set_entry_of_run_or_participation",
            ),
        ]

    def __str__(self) -> str:
        return f"entry {self.position} of training run {self.run_id}"


class TrainingParticipation(models.Model):
    """This instance's organisation taking part in a run that another instance's model steward federates (one platform
    instance per organisation): the signed invitation's terms, and what the organisation's custodian did. Its records
    never leave: it gates and logs them here, sends its encrypted update to the run's aggregator, and keeps the
    manifest's leaves (record id, version, anchored hash, consent, pseudonym, split) and its counts, which the steward's
    instance reads at the end with a signed request. One per (run, attempt): a run the ledger interrupted invites again
    with a new aggregator."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    run_id = models.UUIDField(help_text="the run's id at the steward's instance")
    attempt = models.PositiveIntegerField(default=0)
    steward_organisation = models.CharField(max_length=80, help_text="the inviting instance's organisation")
    organisation = models.CharField(max_length=80, help_text="this instance's organisation taking part")
    model_family = models.CharField(max_length=64)
    terms = models.JSONField(default=dict, help_text="rounds, validation_fraction, target_bound (all public)")
    public_context_key = models.CharField(max_length=128)
    aggregator = models.CharField(max_length=300, help_text="host:port of the run's aggregator")
    authority = models.TextField(help_text="PEM: the run's certificate authority, the only one the client trusts")
    token = models.CharField(
        max_length=128, default="", help_text="the organisation's token for this attempt: sent with every update"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    offered = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="{admitted, refused: {reason: n}, skipped: {reason: n}}")
    round_counts = models.JSONField(default=dict, help_text="round -> records the organisation's update covered")
    manifest = models.JSONField(default=list, help_text="the organisation's training-set leaves, first use first")
    # The run's lineage once it is on the ledger with this organisation's part equal to the kept leaves
    # (training.participation.participations_lineage_confirm): what this instance's patients are shown.
    model_name = models.CharField(max_length=64, blank=True, default="")
    model_version = models.CharField(max_length=32, blank=True, default="")
    lineage_tx_id = models.CharField(max_length=128, blank=True, default="")
    lineage_block = models.PositiveBigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "attempt"], name="training_participation_attempt_unique")
        ]

    def __str__(self) -> str:
        return f"participation in training run {self.run_id} (attempt {self.attempt})"


ParticipationStatus = TrainingParticipation.Status
