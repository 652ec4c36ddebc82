"""Break-the-glass: a clinician without consent declares an emergency for one patient, reads that patient's records
for a bounded time, and answers for it to an auditor; the patient is told, and may forbid it per data category.

What must hold:
- the declaration is a ledger transaction (chaincode.contracts.oversight) that also logs it; the gate admits the
  patient's records to its clinician only while it lasts (EMERGENCY_ACCESS_HOURS, 4 h by default, at most 24 h) and
  never a category the patient forbids; every read is gated and logged like a read for treatment;
- the justification is stored encrypted (AES-256-GCM under the record keys, bound to its declaration) with a random
  salt, and only the SHA-256 of salt and text is on the ledger: the text never reaches a log, an error or the chain,
  and a short justification cannot be guessed from its hash. The reviewer's note is kept the same way;
- a clinician finds the patient by a hospital identifier (system|value), the way a clinician at the bedside knows
  them; an identifier the platform does not know is NotFound, and nothing is declared;
- the patient is told at once in the portal (their emergency page, and every event in "who used my data") and by
  e-mail when their account has an address;
- every declaration is reviewed by an auditor (justified or not, with a note), once, on the ledger.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet

from audit.services import logged_batch_mirror, verdict_note_open, verdict_record
from care.models import EmergencyDeclaration
from care.services import TreatmentRead, category_check, patient_records_read
from chaincode.vocabulary import CATEGORIES, EMERGENCY_MAX_SECONDS, EMERGENCY_REASONS, EMERGENCY_VERDICTS
from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.roles import Role, user_has_role
from health_platform.sealed_text import text_open, text_seal
from ledger.contracts import EmergencyRefusals
from records.selectors import patient_by_identifier, patient_of

log = structlog.get_logger(__name__)

JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 1000
REVIEW_NOTE = "emergency-review-note"


def emergency_duration() -> timedelta:
    """EMERGENCY_ACCESS_HOURS, within what the ledger allows (1 minute to 24 hours)."""
    seconds = float(settings.EMERGENCY_ACCESS_HOURS) * 3600
    return timedelta(seconds=int(min(max(seconds, 60), EMERGENCY_MAX_SECONDS)))


def emergency_declare(*, clinician: Any, identifier: str, reason: str, justification: str) -> EmergencyDeclaration:
    """Declare an emergency for the patient named by `identifier` ("system|value", or a value in
    PATIENT_IDENTIFIER_SYSTEM). Raises LedgerError when the ledger does not answer (nothing is declared then)."""
    profile = _clinician_profile(clinician)
    if reason not in EMERGENCY_REASONS:
        raise ValidationFailed(
            "Choose the emergency's reason from the list.", code="invalid_emergency_reason", detail={"field": "reason"}
        )
    text = _text(justification, "justification", JUSTIFICATION_MIN, JUSTIFICATION_MAX, code="invalid_justification")
    patient = _patient_named(identifier)
    declaration_id = uuid.uuid4()
    key_id, sealed, digest = text_seal(text, purpose="emergency-justification", row=declaration_id)
    recorded = bootstrap.contracts().declare_emergency(
        declaration_id=str(declaration_id),
        grantee=profile.grantee_id,
        organisation=profile.organisation.grantee_id if profile.organisation else None,
        patient_pseudonym=patient.pseudonym,
        reason=reason,
        justification_sha256=digest,
        duration_seconds=int(emergency_duration().total_seconds()),
    )
    with transaction.atomic():
        logged_batch_mirror(recorded.logged)
        declaration = EmergencyDeclaration.objects.create(
            id=declaration_id,
            clinician=clinician,
            grantee_id=profile.grantee_id,
            patient=patient,
            reason=reason,
            justification_key_id=key_id,
            justification_sealed=sealed,
            justification_sha256=digest,
            declared_at=_moment(recorded.entry.declared_at),
            expires_at=_moment(recorded.entry.expires_at),
            tx_id=recorded.logged.tx_id,
            block_number=recorded.logged.block_number,
        )
        transaction.on_commit(lambda: _tell_patient(declaration))
    log.info("emergency_declared", declaration_id=str(declaration_id), reason=reason, tx_id=declaration.tx_id)
    return declaration


def emergency_records_read(*, clinician: Any, declaration_id: str, category: str) -> TreatmentRead:
    """Read the declaration's patient's records of `category`, gated on the ledger under the declaration (refused
    with emergency_expired once it is over, emergency_refused for a category the patient forbids) and logged."""
    category_check(category)
    declaration = emergency_of_clinician(clinician=clinician, declaration_id=declaration_id)
    return patient_records_read(
        clinician=clinician, patient=declaration.patient, category=category, declaration_id=str(declaration.id)
    )


def emergency_review(*, auditor: Any, declaration_id: str, verdict: str, note: str) -> EmergencyDeclaration:
    """An auditor's verdict on a declaration, with a note, once (on the ledger, then here)."""
    declaration = _declaration(declaration_id)
    return verdict_record(
        declaration,
        auditor=auditor,
        verdict=verdict,
        note=note,
        verdicts=EMERGENCY_VERDICTS,
        purpose=REVIEW_NOTE,
        already="already_reviewed",
        submit=lambda reviewer, digest: bootstrap.contracts().review_emergency(
            declaration_id=str(declaration.id), reviewer=reviewer, verdict=verdict, note_sha256=digest
        ),
    )


def emergency_refusals_set(*, user: Any, categories: list[str]) -> EmergencyRefusals:
    """The patient's whole set of categories closed to emergency access (empty: none), on the ledger."""
    patient = patient_of(user)
    if patient is None:
        raise PermissionDenied("Only a patient sets their own refusal of emergency access.")
    if not isinstance(categories, list) or any(c not in CATEGORIES for c in categories):
        raise ValidationFailed("Unknown data category.", code="invalid_category", detail={"field": "categories"})
    refusals = bootstrap.contracts().set_emergency_refusals(patient.pseudonym, sorted(set(categories)))
    log.info("emergency_refusals_set", categories=refusals.categories, tx_id=refusals.tx_id)
    return refusals


def emergency_refusals_of(*, user: Any) -> EmergencyRefusals:
    patient = patient_of(user)
    if patient is None:
        raise PermissionDenied("This is for patients.")
    return bootstrap.contracts().emergency_refusals(patient.pseudonym)


# --- reading ------------------------------------------------------------------------------------


def emergencies_visible_to(*, user: Any) -> QuerySet[EmergencyDeclaration]:
    """A clinician's own declarations, a patient's (about them), or every one for an auditor; newest first."""
    declarations = EmergencyDeclaration.objects.select_related("patient", "clinician__clinician_profile", "judged_by")
    if user_has_role(user, Role.AUDITOR):
        return declarations
    if user_has_role(user, Role.CLINICIAN):
        return declarations.filter(clinician=user)
    patient = patient_of(user)
    if patient is not None:
        return declarations.filter(patient=patient)
    return declarations.none()


def emergency_review_queue() -> QuerySet[EmergencyDeclaration]:
    """Declarations not reviewed yet, oldest first (the longest waiting at the top)."""
    return (
        EmergencyDeclaration.objects.filter(verdict="")
        .select_related("patient", "clinician__clinician_profile")
        .order_by("declared_at")
    )


def emergency_of_clinician(*, clinician: Any, declaration_id: str) -> EmergencyDeclaration:
    """The clinician's own declaration (NotFound for anyone else's, or none)."""
    _clinician_profile(clinician)
    declaration = _declaration(declaration_id)
    if declaration.clinician_id != clinician.pk:  # answered as a declaration that does not exist
        raise NotFound("No such emergency declaration.")
    return declaration


def emergency_visible(*, user: Any, declaration_id: str) -> EmergencyDeclaration:
    try:
        return emergencies_visible_to(user=user).get(pk=uuid.UUID(str(declaration_id)))
    except (ValueError, EmergencyDeclaration.DoesNotExist):
        raise NotFound("No such emergency declaration.") from None


def justification_open(declaration: EmergencyDeclaration) -> str:
    """The justification, for its clinician and the reviewers; checked against the hash on the ledger's copy."""
    return text_open(
        declaration.justification_sealed,
        key_id=declaration.justification_key_id,
        purpose="emergency-justification",
        row=declaration.id,
        digest=declaration.justification_sha256,
    )


def note_open(declaration: EmergencyDeclaration) -> str:
    return verdict_note_open(declaration, purpose=REVIEW_NOTE)


def is_active(declaration: EmergencyDeclaration, *, at: datetime | None = None) -> bool:
    moment = at or datetime.now(UTC)
    return declaration.declared_at <= moment < declaration.expires_at


# --- helpers ------------------------------------------------------------------------------------


def _clinician_profile(user: Any) -> Any:
    profile = getattr(user, "clinician_profile", None)
    if not user_has_role(user, Role.CLINICIAN) or profile is None:
        raise PermissionDenied("Only a registered clinician declares emergencies and reads under them.")
    return profile


def _declaration(declaration_id: str) -> EmergencyDeclaration:
    try:
        return EmergencyDeclaration.objects.select_related("patient").get(pk=uuid.UUID(str(declaration_id)))
    except (ValueError, EmergencyDeclaration.DoesNotExist):
        raise NotFound("No such emergency declaration.") from None


def _patient_named(identifier: Any) -> Any:
    if not isinstance(identifier, str) or not identifier.strip() or len(identifier) > 512:
        raise ValidationFailed(
            "Give the patient's identifier.", code="invalid_identifier", detail={"field": "identifier"}
        )
    system, _, value = identifier.strip().rpartition("|")
    patient = patient_by_identifier(system=system or settings.PATIENT_IDENTIFIER_SYSTEM, value=value.strip())
    if patient is None:
        raise NotFound("No patient with this identifier.", code="unknown_patient")
    return patient


def _text(value: Any, field: str, shortest: int, longest: int, *, code: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not shortest <= len(text) <= longest or "\x00" in text:
        raise ValidationFailed(
            f"Write the {field} in {shortest} to {longest} characters.", code=code, detail={"field": field}
        )
    return text


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _tell_patient(declaration: EmergencyDeclaration) -> None:
    """E-mail the patient (when their account has an address): who, why, until when; no clinical words."""
    user = declaration.patient.user
    if user is None or not user.email:
        return
    clinician = declaration.clinician_name
    send_mail(
        subject="Emergency access to your health records",
        message=(
            f"{clinician} declared an emergency to read your health records without your consent "
            f"({EMERGENCY_REASONS[declaration.reason].lower()}), from {declaration.declared_at:%d %b %Y %H:%M} UTC "
            f"until {declaration.expires_at:%d %b %Y %H:%M} UTC.\n\n"
            "Every emergency access is recorded on the ledger and reviewed by an auditor. You can see each read, "
            "and forbid emergency access to some kinds of data, in your portal under Emergency access.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
        fail_silently=True,
    )
    EmergencyDeclaration.objects.filter(pk=declaration.pk).update(patient_emailed_at=datetime.now(UTC))
