"""The consent mirror: a read model of the consents on the ledger.

The ledger is the truth. This table is written only after the ledger committed a change, and can be
rebuilt from the ledger at any time (manage.py rebuild_consent_mirror). The analytics gate never
reads it: it asks the ledger.
"""

from django.db import models
from django.utils import timezone

from records.models import Patient


class ConsentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"


class Consent(models.Model):
    consent_id = models.CharField(max_length=128, primary_key=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="consents")
    grantee = models.CharField(max_length=80, db_index=True, help_text="clinician:<id> or org:<slug>")
    purposes = models.JSONField()
    categories = models.JSONField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    granted_at = models.DateTimeField()
    granted_tx_id = models.CharField(max_length=128)
    granted_block = models.PositiveBigIntegerField(null=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_tx_id = models.CharField(max_length=128, blank=True, default="")
    revoked_block = models.PositiveBigIntegerField(null=True, blank=True)
    grant_signature = models.CharField(
        max_length=64, blank=True, default="", help_text="SHA-256 of the grant document the patient signed"
    )
    revoke_signature = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-granted_at", "consent_id"]
        indexes = [models.Index(fields=["patient", "status"], name="consent_patient_status")]

    def __str__(self) -> str:
        return f"Consent {self.consent_id}"

    @property
    def patient_signed(self) -> bool:
        """Whether the patient signed the grant with their passkey (consents granted before that was required
        did not: they stay valid, marked "not patient-signed")."""
        return bool(self.grant_signature)

    @property
    def effective_status(self) -> str:
        """active, revoked, expired (period over) or pending (period not begun)."""
        if self.status == ConsentStatus.REVOKED:
            return "revoked"
        now = timezone.now()
        if self.valid_until <= now:
            return "expired"
        if self.valid_from > now:
            return "pending"
        return "active"
