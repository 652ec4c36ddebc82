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
