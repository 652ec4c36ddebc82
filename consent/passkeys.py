"""Patients' passkeys on the ledger: the keys whose signatures alone change a patient's consents.

A patient registers passkeys with allauth (its WebAuthn ceremony, `/accounts/2fa/webauthn/add/`). The public key
of the first one goes to the ledger at once (EnrolPatientKey: the platform may enrol a key only while the patient
has none). Every later passkey waits, usable for signing in but not for consent, until the patient confirms it
with a passkey already on the ledger (AddPatientKey, signed). A passkey is taken off the ledger the same way
(RevokePatientKey, signed; never the last one). A patient who lost every passkey asks the hospital: the custodian's
recovery (RecoverPatientKeys) revokes them all on the ledger, where it stays for the patient to see, and the
patient then enrols a new passkey as at first.
"""

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from allauth.mfa.models import Authenticator
from django.core.mail import send_mail
from django.utils import timezone
from fido2 import cbor
from fido2.webauthn import RegistrationResponse

from chaincode.validation import format_timestamp
from chaincode.webauthn import b64url, document_challenge
from consent.access import user_may_change_consents_of
from consent.services import signed_call
from health_platform import bootstrap
from health_platform.errors import PermissionDenied, ValidationFailed
from health_platform.roles import Role, user_has_role
from ledger import LedgerError
from ledger.contracts import PatientKey, PatientKeys
from records.models import Patient

log = structlog.get_logger(__name__)

RECOVERY_REASONS = {
    "lost_all_passkeys": "The patient lost every device that held a passkey",
    "device_stolen": "A device holding a passkey was stolen",
    "identity_reverified": "The patient's identity was checked again in person",
}


@dataclass(frozen=True)
class SigningRequest:
    """What the browser needs to have a document signed: the document, its WebAuthn challenge, and the
    credentials that may sign it (the patient's active passkeys on the ledger)."""

    document: dict[str, Any]
    challenge: str
    credential_ids: list[str]


@dataclass(frozen=True)
class PatientPasskey:
    """One of the patient's passkeys as the portal shows it: allauth's record, the ledger's, or both."""

    credential_id: str
    name: str
    authenticator_id: int | None
    ledger: PatientKey | None

    @property
    def state(self) -> str:
        """on_ledger, revoked, waiting (registered here, not yet confirmed on the ledger) or removed (taken off
        this account, still on the ledger)."""
        if self.ledger is None:
            return "waiting"
        if self.ledger.status != "active":
            return "revoked"
        return "on_ledger" if self.authenticator_id is not None else "removed"


def signing_request(*, patient: Patient, document: dict[str, Any], keys: PatientKeys | None = None) -> SigningRequest:
    keys = keys or patient_keys_of(patient=patient)
    return SigningRequest(document, document_challenge(document), [key.credential_id for key in keys.active])


def patient_keys_of(*, patient: Patient) -> PatientKeys:
    return bootstrap.contracts().patient_keys(patient.pseudonym)


def patient_passkeys(*, patient: Patient, keys: PatientKeys | None = None) -> list[PatientPasskey]:
    """The patient's passkeys: those of their account (allauth) and those on the ledger, matched by credential."""
    keys = keys or patient_keys_of(patient=patient)
    on_ledger = {key.credential_id: key for key in keys.keys}
    shown = []
    for authenticator in _webauthn_authenticators(patient):
        credential = ledger_key_of(authenticator, patient=patient)["credential_id"]
        shown.append(
            PatientPasskey(
                credential, authenticator.data.get("name", ""), authenticator.pk, on_ledger.pop(credential, None)
            )
        )
    shown += [PatientPasskey(credential, "", None, key) for credential, key in on_ledger.items()]
    return shown


def ledger_key_of(authenticator: Authenticator, *, patient: Patient) -> dict[str, str]:
    """A WebAuthn authenticator's public key, as the ledger takes it: from the registration allauth verified."""
    registration = RegistrationResponse.from_dict(authenticator.data["credential"])
    auth_data = registration.response.attestation_object.auth_data
    credential = auth_data.credential_data
    if credential is None:
        raise ValidationFailed("The passkey's registration holds no public key.", code="invalid_passkey")
    return {
        "patient_pseudonym": patient.pseudonym,
        "credential_id": b64url(credential.credential_id),
        "public_key": b64url(cbor.encode(dict(credential.public_key))),
        "rp_id_hash": auth_data.rp_id_hash.hex(),
        "origin": registration.response.client_data.origin,
    }


def patient_passkey_enrol(*, patient: Patient, authenticator: Authenticator) -> PatientKeys:
    """Put the patient's passkey on the ledger as their first (refused as keys_exist if they hold one there)."""
    keys = bootstrap.contracts().enrol_patient_key(ledger_key_of(authenticator, patient=patient))
    log.info("patient_key_enrolled", patient_id=str(patient.pk), authenticator_id=authenticator.pk)
    return keys


def patient_passkey_add_document(*, actor: Any, patient: Patient, authenticator_id: int) -> dict[str, Any]:
    """The document a patient signs with a passkey on the ledger to put another of their passkeys there."""
    authenticator = _own_authenticator(actor, patient, authenticator_id)
    return {
        **ledger_key_of(authenticator, patient=patient),
        "action": "add_patient_key",
        "issued_at": format_timestamp(timezone.now()),
    }


def patient_passkey_revoke_document(*, actor: Any, patient: Patient, credential_id: str) -> dict[str, Any]:
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("Only the patient can take their passkeys off the ledger.")
    return {
        "action": "revoke_patient_key",
        "patient_pseudonym": patient.pseudonym,
        "credential_id": credential_id,
        "issued_at": format_timestamp(timezone.now()),
    }


# A key document's action, which is also the name of the Contracts method that submits it.
_KEY_CHANGES = ("add_patient_key", "revoke_patient_key")


def patient_passkey_change(*, actor: Any, patient: Patient, document: Any, signature: Any) -> PatientKeys:
    """Put a passkey on the ledger or take one off, by a document (patient_passkey_add_document's or
    patient_passkey_revoke_document's) that one of the patient's passkeys on the ledger signed."""
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("Only the patient can change their passkeys on the ledger.")
    action = document.get("action") if isinstance(document, dict) else None
    if action not in _KEY_CHANGES:
        raise ValidationFailed("The document must add or revoke a passkey.", code="invalid_document")
    if document.get("patient_pseudonym") != patient.pseudonym:
        raise PermissionDenied("A patient can sign only for themselves.")
    change = getattr(bootstrap.contracts(), action)
    keys = signed_call(lambda: change(document, signature))
    log.info("patient_key_changed", patient_id=str(patient.pk), action=action)
    return keys


def patient_passkeys_recover(*, actor: Any, patient: Patient, reason: str) -> PatientKeys:
    """The custodian's recovery for a patient who lost every passkey: every key revoked on the ledger (where the
    recovery stays, shown to the patient on their passkeys page), the account's passkeys removed so that the patient
    enrols a new one as at first, and the patient told by e-mail, so that a reset they did not ask for is not
    silent. Only a custodian may; the patient's identity is the hospital's to check first."""
    if not user_has_role(actor, Role.CUSTODIAN):
        raise PermissionDenied("Only the hospital's custodian resets a patient's passkeys.")
    if reason not in RECOVERY_REASONS:
        raise ValidationFailed(
            f"Unknown reason; allowed: {', '.join(sorted(RECOVERY_REASONS))}.", code="unknown_reason"
        )
    recovery_id = f"rcv-{uuid.uuid4().hex}"
    keys = bootstrap.contracts().recover_patient_keys(
        recovery_id=recovery_id, pseudonym=patient.pseudonym, custodian=f"custodian:{actor.pk}", reason=reason
    )
    Authenticator.objects.filter(user__patient=patient, type=Authenticator.Type.WEBAUTHN).delete()
    user = getattr(patient, "user", None)
    if user is not None and user.email:
        send_mail(
            subject="The hospital reset your health_platform passkeys",
            message=(
                "The hospital has taken every passkey of yours off the ledger: they can no longer sign your consents. "
                "Your consents themselves are unchanged.\n\nSign in and add a new passkey to grant or revoke consent "
                "again. Your passkeys page shows this reset for good. If you did not ask for it, tell the hospital "
                "now.\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )
    log.info("patient_keys_recovered", patient_id=str(patient.pk), recovery_id=recovery_id, reason=reason)
    return keys


def enrol_first_passkey(
    sender: Any, request: Any = None, user: Any = None, authenticator: Any = None, **_: Any
) -> None:
    """allauth's authenticator_added: a patient's passkey goes to the ledger at once when it is their first there.

    A later passkey waits for the patient's signed confirmation. Should the ledger be away, the passkey waits too:
    the passkeys page puts it there when the ledger is back (nothing is lost, nothing is enrolled silently)."""
    patient = getattr(user, "patient", None)
    if patient is None or authenticator is None or authenticator.type != Authenticator.Type.WEBAUTHN:
        return
    try:
        if not patient_keys_of(patient=patient).active:
            patient_passkey_enrol(patient=patient, authenticator=authenticator)
    except LedgerError as error:
        log.warning("patient_key_enrolment_deferred", patient_id=str(patient.pk), code=error.code)


def patient_passkey_enrol_waiting(*, actor: Any, patient: Patient, authenticator_id: int) -> PatientKeys:
    """Put a waiting passkey on the ledger as the patient's first (their first enrolment, or after a recovery)."""
    return patient_passkey_enrol(patient=patient, authenticator=_own_authenticator(actor, patient, authenticator_id))


def _webauthn_authenticators(patient: Patient) -> list[Authenticator]:
    return list(Authenticator.objects.filter(user__patient=patient, type=Authenticator.Type.WEBAUTHN).order_by("pk"))


def _own_authenticator(actor: Any, patient: Patient, authenticator_id: int) -> Authenticator:
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("Only the patient can put their passkeys on the ledger.")
    found = next((a for a in _webauthn_authenticators(patient) if a.pk == authenticator_id), None)
    if found is None:
        raise ValidationFailed("No such passkey on your account.", code="unknown_passkey")
    return found
