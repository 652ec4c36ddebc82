"""Patients, records and record versions.

No names or identifiers are stored in plaintext: a patient is known by the keyed pseudonym of their
identifier, and a record version's content exists only as AES-256-GCM ciphertext, bound to its row.
"""

import uuid

from django.conf import settings
from django.db import models

from chaincode.vocabulary import CATEGORIES


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="patient"
    )
    pseudonym = models.CharField(max_length=64, unique=True, help_text="hex HMAC-SHA256 of system|value")
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(
        null=True, blank=True, help_text="set when their data was erased: the rows left are pseudonymous tombstones"
    )

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Patient {self.pseudonym[:12]}"


class PatientIdentifier(models.Model):
    """One identifier of a patient (an MRN, a national id), as its keyed hash: hex HMAC-SHA256 of "system|value"
    under PSEUDONYM_KEY, as the patient's pseudonym is of their first identifier. A bundle that names a patient
    by any of them reaches the same patient."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="identifiers")
    pseudonym = models.CharField(max_length=64, unique=True, help_text="hex HMAC-SHA256 of system|value")

    class Meta:
        ordering = ["patient", "pseudonym"]

    def __str__(self) -> str:
        return f"Identifier {self.pseudonym[:12]} of {self.patient}"


class Record(models.Model):
    """One patient's observations of one category; each ingest that changes them adds a version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="records")
    category = models.CharField(max_length=32, choices=sorted(CATEGORIES.items()))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["patient", "category"], name="record_patient_category_unique")]

    def __str__(self) -> str:
        return f"Record {self.id} ({self.category})"

    @property
    def latest_version(self) -> "RecordVersion | None":
        """The newest version, anchored or not (see selectors for the analysis-safe one)."""
        return self.versions.order_by("-version").first()


class AnchorState(models.TextChoices):
    PENDING = "pending", "Pending"
    ANCHORED = "anchored", "Anchored"


class RecordVersion(models.Model):
    """One version of a record: its hash, its ciphertext and where its anchor is on the ledger.

    `ciphertext` is nonce || ciphertext || tag under key `key_id`, with the record id, version, key id
    and content encoding as associated data (records/crypto.py: record_seal, record_open). `sha256`
    is the hash of the RFC 8785 canonical plaintext; it is what the ledger anchors. A pending version
    is not on the ledger yet and must never be analysed.
    """

    record = models.ForeignKey(Record, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    key_id = models.CharField(max_length=64)
    content_encoding = models.CharField(
        max_length=16, default="identity", help_text="identity, or deflate: compressed before encryption"
    )
    ciphertext = models.BinaryField()
    features = models.BinaryField(
        default=b"", blank=True, help_text="the model features kept at ingest, sealed (records.features); empty before"
    )
    features_sha256 = models.CharField(
        max_length=64, blank=True, default="", help_text="salted hash of the features, anchored with the version"
    )
    anchor_state = models.CharField(max_length=16, choices=AnchorState.choices, default=AnchorState.PENDING)
    anchor_tx_id = models.CharField(max_length=128, blank=True, default="")
    anchor_block = models.PositiveBigIntegerField(null=True, blank=True)
    anchored_at = models.DateTimeField(null=True, blank=True)
    anchor_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["record_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["record", "version"], name="record_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="record_version_positive"),
        ]
        indexes = [
            models.Index(fields=["anchor_state", "created_at"], name="record_version_anchor_state"),
            # Each record's newest anchored version (record_versions_usable_for_analysis) from the index alone: a
            # million-record analysis's planning otherwise reads every version's row, ciphertext and all.
            models.Index(fields=["anchor_state", "record", "version"], name="record_version_anchored"),
        ]

    def __str__(self) -> str:
        return f"Record {self.record_id} v{self.version}"

    @property
    def is_anchored(self) -> bool:
        return self.anchor_state == AnchorState.ANCHORED


class IngestOutcome(models.TextChoices):
    STORED = "stored", "Stored"
    REFUSED = "refused", "Refused"


class IngestRun(models.Model):
    """One bundle sent for ingest: who, when, through which door, and what became of it, in counts.

    No content, no file name (a sender's file names may carry identifiers), no pseudonym: the body's size and
    SHA-256, the entries' count, the records stored, and for a refused bundle the refusal's stable code.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="ingest_runs"
    )
    source = models.CharField(max_length=16, default="api", help_text="portal or api")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=IngestOutcome.choices)
    refusal_code = models.CharField(max_length=64, blank=True, default="")
    body_bytes = models.PositiveBigIntegerField(default=0)
    body_sha256 = models.CharField(max_length=64, blank=True, default="")
    entries = models.PositiveIntegerField(default=0)
    records_new = models.PositiveIntegerField(default=0)
    records_unchanged = models.PositiveIntegerField(default=0)
    records_pending = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"Ingest {self.id} ({self.outcome})"


class BulkIngestJob(models.Model):
    """A bulk ingest of FHIR NDJSON files and how far it got: the slices committed, the counts so far.

    Known by its files' contents (`files_sha256`: SHA-256 over their SHA-256s, in order), so that the same command
    run again after an interruption resumes here, at `slices_done`; a slice's records and this row's progress are
    committed in one transaction. No file name (it may carry identifiers) and no content: sizes, hashes, counts,
    and the refused lines by file position, line number and code.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    files_sha256 = models.CharField(max_length=64, unique=True)
    files = models.JSONField(default=list, help_text='[{"sha256", "bytes"}] in the order given')
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=16, default="running", help_text="running, done or refused")
    refusal_code = models.CharField(max_length=64, blank=True, default="")
    slice_patients = models.PositiveIntegerField()
    slices_total = models.PositiveIntegerField(default=0)
    slices_done = models.PositiveIntegerField(default=0)
    records_new = models.PositiveIntegerField(default=0)
    records_unchanged = models.PositiveIntegerField(default=0)
    patients_refused = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=list, help_text='[{"code", "file", "line", "path"}], the first ones')

    def __str__(self) -> str:
        return f"Bulk ingest {self.id} ({self.status}, {self.slices_done}/{self.slices_total})"


class PatientDataKey(models.Model):
    """A patient's data key: 32 random bytes that seal every record version (and its features) of theirs written
    since per-patient keys, stored only wrapped (AES-256-GCM) under the master keyring (RECORD_ENCRYPTION_KEYS).

    A version names it by its key id, "dk:<id hex>" (records.patient_keys). Rotating the master key rewraps these
    rows; the records are not re-encrypted. Erasing the patient deletes this row: what it sealed no longer opens.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="data_key")
    wrap_key_id = models.CharField(max_length=64, help_text="the master key id the data key is wrapped under")
    wrapped_key = models.BinaryField(help_text="nonce || AES-256-GCM(data key) || tag, bound to patient and key ids")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Data key {self.id} of {self.patient}"


class ErasureState(models.TextChoices):
    REQUESTED = "requested", "Requested: not yet on the ledger"
    ON_LEDGER = "on_ledger", "On the ledger: the data is being destroyed"
    DONE = "done", "Done"


class PatientErasure(models.Model):
    """A patient's erasure: what the ledger's erasure entry names (pseudonym, record ids), where it is on the
    ledger, and how far the platform got in destroying the data. Pseudonymous: ids, hashes, times."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.OneToOneField(Patient, on_delete=models.PROTECT, related_name="erasure")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    state = models.CharField(max_length=16, choices=ErasureState.choices, default=ErasureState.REQUESTED)
    record_ids = models.JSONField(default=list, help_text="the anchored records erased on the ledger, sorted")
    tx_id = models.CharField(max_length=128, blank=True, default="")
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    erased_at = models.CharField(max_length=40, blank=True, default="", help_text="the ledger's time, RFC 3339")
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Erasure {self.id} ({self.state})"
