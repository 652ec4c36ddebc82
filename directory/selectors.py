"""Reads: the directory as the custodian manages it, and the invitations."""

from dataclasses import dataclass

from django.db.models import QuerySet

from directory.models import PatientInvitation
from health_platform.models import ClinicianProfile, GranteeStatus, Organisation


@dataclass(frozen=True)
class DirectoryEntry:
    grantee_id: str
    kind: str  # "clinician" or "organisation"
    name: str
    organisation: str
    username: str
    active: bool
    on_ledger: bool  # registered on the ledger (one never registered counts as active there)
    tx_id: str
    block_number: int | None


def directory_entries() -> list[DirectoryEntry]:
    """Every clinician and organisation, with its status as mirrored from the ledger; organisations first."""
    statuses = {status.grantee_id: status for status in GranteeStatus.objects.all()}
    entries = []
    for organisation in Organisation.objects.all():
        entries.append(_entry(organisation.grantee_id, "organisation", organisation.name, "", "", statuses))
    for profile in ClinicianProfile.objects.select_related("user", "organisation"):
        organisation_name = profile.organisation.name if profile.organisation else ""
        entries.append(
            _entry(
                profile.grantee_id,
                "clinician",
                profile.display_name,
                organisation_name,
                profile.user.get_username(),
                statuses,
            )
        )
    return entries


def directory_entry_get(*, grantee_id: str) -> DirectoryEntry | None:
    return next((entry for entry in directory_entries() if entry.grantee_id == grantee_id), None)


def _entry(grantee_id: str, kind: str, name: str, organisation: str, username: str, statuses: dict) -> DirectoryEntry:
    status = statuses.get(grantee_id)
    return DirectoryEntry(
        grantee_id=grantee_id,
        kind=kind,
        name=name,
        organisation=organisation,
        username=username,
        active=status.active if status else True,
        on_ledger=status is not None,
        tx_id=status.tx_id if status else "",
        block_number=status.block_number if status else None,
    )


def invitations_recent(*, limit: int = 50) -> QuerySet[PatientInvitation]:
    """The latest invitations, newest first (patients by pseudonym only)."""
    return PatientInvitation.objects.select_related("patient", "created_by")[:limit]


def invitation_get(*, invitation_id: str) -> PatientInvitation | None:
    import uuid

    try:
        key = uuid.UUID(str(invitation_id))
    except ValueError:
        return None
    return PatientInvitation.objects.select_related("patient").filter(pk=key).first()
