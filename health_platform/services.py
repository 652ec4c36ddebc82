"""Writes to the grantee directory."""

from typing import Any

import structlog
from django.db import transaction

from health_platform.models import ClinicianProfile, Organisation
from health_platform.roles import Role, role_group

log = structlog.get_logger(__name__)


def organisation_create(*, slug: str, name: str) -> Organisation:
    organisation, _ = Organisation.objects.update_or_create(slug=slug, defaults={"name": name})
    log.info("organisation_saved", organisation_id=organisation.pk)
    return organisation


@transaction.atomic
def clinician_register(*, user: Any, display_name: str, organisation: Organisation | None = None) -> ClinicianProfile:
    """Give `user` the clinician role and a grantee identity (idempotent)."""
    user.groups.add(role_group(Role.CLINICIAN))
    profile, _ = ClinicianProfile.objects.update_or_create(
        user=user, defaults={"display_name": display_name, "organisation": organisation}
    )
    log.info("clinician_registered", user_id=user.pk, clinician_id=profile.public_id)
    return profile
