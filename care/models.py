"""Emergency access (break-the-glass) as the platform keeps it: the ledger's declaration and review, mirrored with
the words the ledger must not hold (the justification and the reviewer's note, each encrypted at rest, their
SHA-256 on the ledger).

The ledger is the truth for what the gate admits (chaincode.contracts.oversight); these rows are what the
portals list and what a reviewer reads. A row is written only after the ledger committed its transaction.
"""

import uuid

from django.conf import settings
from django.db import models

from chaincode.vocabulary import EMERGENCY_REASONS, EMERGENCY_VERDICTS
from health_platform.models import Judged


class EmergencyDeclaration(Judged):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="the ledger's declaration_id")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergencies")
    grantee_id = models.CharField(max_length=80, help_text="the clinician's id on the ledger")
    patient = models.ForeignKey("records.Patient", on_delete=models.PROTECT, related_name="emergencies")
    reason = models.CharField(max_length=32, choices=list(EMERGENCY_REASONS.items()))
    justification_key_id = models.CharField(max_length=64)
    justification_sealed = models.BinaryField(help_text="AES-256-GCM under the record keys, bound to this row")
    justification_sha256 = models.CharField(max_length=64)
    declared_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    tx_id = models.CharField(max_length=128)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    patient_emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-declared_at", "id"]
        indexes = [
            models.Index(fields=["verdict", "declared_at"], name="emergency_review_queue"),
            models.Index(fields=["patient", "declared_at"], name="emergency_patient"),
        ]

    def __str__(self) -> str:
        return f"Emergency {self.id}"

    @property
    def clinician_name(self) -> str:
        """The clinician as the directory names them (patients see this name, never the account's username)."""
        profile = getattr(self.clinician, "clinician_profile", None)
        return profile.display_name if profile is not None else self.grantee_id

    def get_verdict_display(self) -> str:
        return EMERGENCY_VERDICTS.get(self.verdict, self.verdict)
