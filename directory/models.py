"""Patient enrolment invitations.

An invitation lets the person behind one ingested patient create their portal account, once. Only the SHA-256
of its token is stored: the token itself exists in the e-mail (or on the paper handed over at the desk) and
nowhere in the platform. An invitation names the patient by row only; it holds no identifier and no health data.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from records.models import Patient


class InvitationState(models.TextChoices):
    PENDING = "pending", "Waiting to be used"
    USED = "used", "Used"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


class PatientInvitation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="invitations")
    token_sha256 = models.CharField(max_length=64, unique=True)
    by_email = models.BooleanField(help_text="sent by e-mail (else handed over as a code)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    enrolled_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"Invitation {self.id}"

    @property
    def state(self) -> str:
        if self.used_at is not None:
            return InvitationState.USED
        if self.revoked_at is not None:
            return InvitationState.REVOKED
        if self.expires_at <= timezone.now():
            return InvitationState.EXPIRED
        return InvitationState.PENDING

    @property
    def state_label(self) -> str:
        return InvitationState(self.state).label
