"""The directory of grantees: organisations and clinicians a patient can grant consent to.

On the ledger a grantee is known only by an opaque id ("clinician:<public id>", "org:<slug>"),
never by name: names stay in this database.
"""

import secrets

from django.conf import settings
from django.db import models


def _new_public_id() -> str:
    return f"c-{secrets.token_hex(6)}"


class Organisation(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="the ledger knows it as org:<slug>")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def grantee_id(self) -> str:
        return f"org:{self.slug}"


class ClinicianProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clinician_profile")
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.PROTECT, related_name="clinicians"
    )
    public_id = models.CharField(max_length=32, unique=True, default=_new_public_id, editable=False)
    display_name = models.CharField(max_length=200, help_text="shown to patients choosing whom to grant")

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def grantee_id(self) -> str:
        return f"clinician:{self.public_id}"


class GranteeStatus(models.Model):
    """Mirror of a grantee's directory entry on the ledger (chaincode.contracts.directory): the ledger is the
    truth and the gate reads it there; this row is written only after the ledger committed the change, and
    `manage.py rebuild_grantee_mirror` rebuilds every row from the ledger alone. A grantee without a row
    was never registered on the ledger, which the gate treats as active."""

    grantee_id = models.CharField(max_length=80, unique=True)
    active = models.BooleanField(default=True)
    registered_by = models.CharField(max_length=128, blank=True, default="")
    changed_at = models.DateTimeField()
    tx_id = models.CharField(max_length=128)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["grantee_id"]

    def __str__(self) -> str:
        return f"{self.grantee_id} ({'active' if self.active else 'inactive'})"


class Judged(models.Model):
    """Something an auditor judges once (an emergency declaration, a misuse alert): the verdict as the ledger holds it
    ("" until then), who gave it, when and in which transaction, and their note, sealed here (health_platform.
    sealed_text) with only its salted hash on the ledger."""

    verdict = models.CharField(max_length=16, blank=True, default="")
    judged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    judged_at = models.DateTimeField(null=True, blank=True)
    note_key_id = models.CharField(max_length=64, blank=True, default="")
    note_sealed = models.BinaryField(null=True, blank=True)
    note_sha256 = models.CharField(max_length=64, blank=True, default="")
    verdict_tx_id = models.CharField(max_length=128, blank=True, default="")
    verdict_block_number = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def judged(self) -> bool:
        return bool(self.verdict)
