"""Who may see and change which consents: the one place these rules live.

patient    sees and changes their own consents only
clinician  sees the consents that name them or their organisation (pseudonymous ids, codes)
auditor    sees every consent (codes, ids, periods; no clinical values exist in a consent)
"""

from typing import Any

from consent.models import Consent
from health_platform.api import permission
from health_platform.roles import Role, user_has_role, user_roles
from health_platform.selectors import grantee_ids_of_user
from records.selectors import patient_of


def user_may_change_consents_of(user: Any, patient: Any) -> bool:
    own = patient_of(user)
    return own is not None and own.pk == patient.pk


def user_may_view_consent(user: Any, consent: Consent) -> bool:
    if user_may_change_consents_of(user, consent.patient):
        return True
    if user_has_role(user, Role.AUDITOR):
        return True
    return user_has_role(user, Role.CLINICIAN) and consent.grantee in grantee_ids_of_user(user=user)


def user_may_read_consents(user: Any) -> bool:
    return bool(user_roles(user) & {Role.PATIENT, Role.CLINICIAN, Role.AUDITOR})


def user_is_patient(user: Any) -> bool:
    """A patient whose account is linked to their records (the only one who grants or revokes their consent)."""
    return patient_of(user) is not None


READ_REFUSED = "Only patients, clinicians and auditors read consents."
CanReadConsents = permission(user_may_read_consents, READ_REFUSED)
IsPatient = permission(user_is_patient, "Only a patient can grant or revoke consent, and only their own.")
