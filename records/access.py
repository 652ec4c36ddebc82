"""Who may do what with records: the one place these rules live.

    custodian (or superuser)  ingests records; reads every record's metadata
    auditor                   reads every record's metadata, never clinical content
    patient                   reads their own records, content included; asks for their own erasure
    clinician                 nothing here: clinicians reach records only through analyses

Roles add up: a clinician who is also a patient reads their own records as a patient. Views,
the API and the selectors all go through these functions.
"""

from typing import Any

from health_platform.api import permission
from health_platform.roles import Role, user_has_role, user_roles


def user_may_ingest_records(user: Any) -> bool:
    return _is_active_superuser(user) or user_has_role(user, Role.CUSTODIAN)


def user_may_read_all_record_metadata(user: Any) -> bool:
    return _is_active_superuser(user) or bool(user_roles(user) & {Role.AUDITOR, Role.CUSTODIAN})


def user_may_read_own_records(user: Any) -> bool:
    return user_has_role(user, Role.PATIENT)


def user_may_erase_own_records(user: Any) -> bool:
    """Only the patient themself asks for their erasure: no staff role (nor the superuser) erases for them."""
    return user_has_role(user, Role.PATIENT)


def user_may_read_records(user: Any) -> bool:
    return user_may_read_all_record_metadata(user) or user_may_read_own_records(user)


def user_owns_record(user: Any, record: Any) -> bool:
    """True when `record` belongs to the patient linked to `user` (and the user is a patient)."""
    return (
        user_may_read_own_records(user)
        and record.patient.user_id is not None
        and record.patient.user_id == getattr(user, "pk", None)
    )


def _is_active_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser)


CanIngestRecords = permission(user_may_ingest_records, "Only a custodian may ingest records.")
CanReadRecords = permission(user_may_read_records, "Clinicians and users without a role do not read records directly.")
CanEraseOwnRecords = permission(user_may_erase_own_records, "Only the patient themself may erase their records.")
