"""Writes to the grantee directory: organisations and clinicians, and their status on the ledger.

A grantee's status (active or inactive) is a ledger transaction first (chaincode.contracts.directory),
then the mirror row (GranteeStatus), as consents are. Every grantee the directory creates is registered
on the ledger in the same step, so the gate knows each one; one the ledger never registered (created
before the directory was on the ledger) is treated as active there and is registered by
`grantee_mirror_rebuild(register_missing=True)` (`manage.py rebuild_grantee_mirror --register-missing`).
"""

from datetime import datetime
from typing import Any

import structlog
from django.db import transaction

from health_platform import bootstrap
from health_platform.models import ClinicianProfile, GranteeStatus, Organisation
from health_platform.roles import Role, role_group
from ledger.contracts import LedgerGrantee

log = structlog.get_logger(__name__)


@transaction.atomic
def organisation_create(*, slug: str, name: str) -> Organisation:
    """Create (or rename) an organisation and register it on the ledger. If the ledger does not answer,
    nothing is stored (the error propagates and the database transaction is rolled back)."""
    organisation, _ = Organisation.objects.update_or_create(slug=slug, defaults={"name": name})
    grantee_register(grantee_id=organisation.grantee_id)
    log.info("organisation_saved", organisation_id=organisation.pk)
    return organisation


@transaction.atomic
def clinician_register(*, user: Any, display_name: str, organisation: Organisation | None = None) -> ClinicianProfile:
    """Give `user` the clinician role and a grantee identity, registered on the ledger (idempotent)."""
    user.groups.add(role_group(Role.CLINICIAN))
    profile, _ = ClinicianProfile.objects.update_or_create(
        user=user, defaults={"display_name": display_name, "organisation": organisation}
    )
    grantee_register(grantee_id=profile.grantee_id)
    log.info("clinician_registered", user_id=user.pk, clinician_id=profile.public_id)
    return profile


def grantee_register(*, grantee_id: str) -> GranteeStatus:
    """Register a grantee on the ledger as active (one already registered keeps its status), then mirror it."""
    entry = bootstrap.contracts().register_grantee(grantee_id)
    return _mirror(entry)


def grantee_set_active(*, grantee_id: str, active: bool) -> GranteeStatus:
    """Activate or deactivate a grantee: a ledger transaction, then the mirror row. From the gate's next batch,
    an inactive grantee's consents admit nothing (refusal reason grantee_inactive). Idempotent."""
    entry = bootstrap.contracts().set_grantee_status(grantee_id, active=active)
    status = _mirror(entry)
    log.info("grantee_status_changed", grantee=grantee_id, active=active, tx_id=entry.tx_id, block=entry.block_number)
    return status


def grantee_mirror_rebuild(*, register_missing: bool = False) -> int:
    """Replace the mirror with the ledger's entries; with `register_missing`, first register on the ledger every
    directory grantee it does not know. Returns the row count."""
    contracts = bootstrap.contracts()
    if register_missing:
        known = {entry.grantee for entry in contracts.grantees()}
        directory = [p.grantee_id for p in ClinicianProfile.objects.all()]
        directory += [o.grantee_id for o in Organisation.objects.all()]
        for grantee_id in sorted(set(directory) - known):
            contracts.register_grantee(grantee_id)
    entries = contracts.grantees()
    with transaction.atomic():
        GranteeStatus.objects.all().delete()
        GranteeStatus.objects.bulk_create([GranteeStatus(**_mirror_fields(entry)) for entry in entries])
    log.info("grantee_mirror_rebuilt", grantees=len(entries))
    return len(entries)


def _mirror(entry: LedgerGrantee) -> GranteeStatus:
    fields = _mirror_fields(entry)
    status, _ = GranteeStatus.objects.update_or_create(grantee_id=fields.pop("grantee_id"), defaults=fields)
    return status


def _mirror_fields(entry: LedgerGrantee) -> dict[str, Any]:
    return {
        "grantee_id": entry.grantee,
        "active": entry.active,
        "registered_by": entry.registered_by,
        "changed_at": datetime.fromisoformat(entry.changed_at.replace("Z", "+00:00")),
        "tx_id": entry.tx_id,
        "block_number": entry.block_number,
    }
