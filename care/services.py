"""Reading a patient's records, for treatment (under consent) or in an emergency (under a declaration): the gate on
the ledger, one access event per record read, then decryption for display. Emergencies are declared and reviewed in
care.emergencies.

A read is a write: every record it gates is logged on the ledger (admitted with the consent that allowed it,
refused with the reason) before anything is shown, so these are services, not selectors.

What must hold:
- the decision is the ledger's, at the moment of the read (CheckAccessBatch: consent for purpose treatment
  over the record's category, the record's recomputed hash equal to its anchor, the grantee active), never the
  consent mirror's;
- nothing is shown unless the read's events are committed on the ledger: a ledger that does not answer (gate or
  log) raises its LedgerError and the caller answers 503 with nothing decrypted;
- a clinician names a patient only through a consent that names them (any purpose, any status) in the mirror:
  any other pseudonym, unknown or not, is NotFound, so the pseudonyms of patients who never consented to them
  cannot be probed. Records of a patient they know are gated and logged whatever the ledger answers;
- in an emergency the clinician names their own declaration, never a pseudonym: the gate admits its patient's
  records while it lasts (purpose emergency), and each event names the declaration as its request_id.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from audit.services import access_batch_log
from chaincode.validation import format_timestamp
from chaincode.vocabulary import CATEGORIES, EMERGENCY
from consent.selectors import consents_granted_to
from health_platform import bootstrap
from health_platform.errors import NotFound, PermissionDenied, ValidationFailed
from health_platform.roles import Role, user_has_role
from ledger.contracts import AccessItem
from records.models import Patient
from records.selectors import (
    NO_CONTENT_HASH,
    bundle_observation_rows,
    content_sha256,
    record_versions_contents,
    record_versions_usable_for_analysis,
)

log = structlog.get_logger(__name__)

TREATMENT = "treatment"


@dataclass(frozen=True)
class RecordRead:
    """One record the read gated: the ledger's decision and, only when admitted, its observations."""

    record_id: str
    category: str
    version: int
    decision: str  # admit or refuse
    reason: str | None  # a REFUSAL_REASONS code when refused
    consent_id: str | None  # the consent that admitted it
    observations: list[dict[str, Any]] | None  # None unless admitted

    @property
    def admitted(self) -> bool:
        return self.decision == "admit"


@dataclass(frozen=True)
class TreatmentRead:
    """A read (for treatment, or in an emergency) as logged on the ledger: its batch, transaction and block, and each
    record's answer."""

    read_id: str
    patient_pseudonym: str
    category: str
    tx_id: str | None  # None when the patient has no record of the category (nothing was gated)
    block_number: int | None
    records: list[RecordRead]
    purpose: str = TREATMENT
    declaration_id: str | None = None  # the emergency declaration that allowed it

    @property
    def admitted(self) -> list[RecordRead]:
        return [record for record in self.records if record.admitted]

    @property
    def refusals(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            if record.reason:
                counts[record.reason] = counts.get(record.reason, 0) + 1
        return counts


def treatment_read_batch_id(read_id: str) -> str:
    return f"read:{read_id}"


def treatment_read_event_id(read_id: str, record_id: str) -> str:
    return f"read:{read_id}:{record_id}"


def read_clock() -> datetime:
    """The moment the gate asks the ledger about: now (a test moves it instead of waiting for a consent to end)."""
    return datetime.now(UTC)


def treatment_patient_for(*, clinician: Any, patient_pseudonym: str) -> Patient:
    """The patient `clinician` may ask to read: one a consent in the mirror names them (or their organisation) for.

    PermissionDenied for anyone but a registered clinician; NotFound for any other pseudonym."""
    profile = getattr(clinician, "clinician_profile", None)
    if not user_has_role(clinician, Role.CLINICIAN) or profile is None:
        raise PermissionDenied("Only a registered clinician reads records for treatment.")
    consent = consents_granted_to(user=clinician).filter(patient__pseudonym=patient_pseudonym).first()
    if consent is None:
        raise NotFound("No patient with this pseudonym has consented to you.")
    return consent.patient


def treatment_records_read(*, clinician: Any, patient_pseudonym: str, category: str) -> TreatmentRead:
    """Gate `clinician`'s read of the patient's records of `category` on the ledger, log every record's decision in
    ONE ledger transaction, then open the admitted ones for display. Raises LedgerError when the ledger does not
    confirm (nothing is shown then)."""
    category_check(category)
    patient = treatment_patient_for(clinician=clinician, patient_pseudonym=patient_pseudonym)
    return patient_records_read(clinician=clinician, patient=patient, category=category)


def category_check(category: str) -> None:
    if category not in CATEGORIES:
        raise ValidationFailed("Unknown data category.", code="invalid_category", detail={"field": "category"})


def patient_records_read(
    *, clinician: Any, patient: Patient, category: str, declaration_id: str | None = None
) -> TreatmentRead:
    """The gate, the log and the opening of one read: for treatment, or in an emergency under `declaration_id`."""
    profile = clinician.clinician_profile
    purpose = EMERGENCY if declaration_id else TREATMENT
    read_id = uuid.uuid4().hex
    versions = {
        v.pk: v for v in record_versions_usable_for_analysis(categories=[category]).filter(record__patient=patient)
    }
    contents = {c.version_id: c for c in record_versions_contents(version_ids=list(versions))}
    gated = [contents[pk] for pk in versions if pk in contents]
    hashes = [content_sha256(c.plaintext) if c.plaintext is not None else NO_CONTENT_HASH for c in gated]
    if not gated:
        return TreatmentRead(read_id, patient.pseudonym, category, None, None, [], purpose, declaration_id)
    answers = bootstrap.contracts().check_access_batch(
        grantee=profile.grantee_id,
        organisation=profile.organisation.grantee_id if profile.organisation else None,
        purpose=purpose,
        at=format_timestamp(read_clock()),
        items=[AccessItem(str(c.record_id), c.category, sha) for c, sha in zip(gated, hashes, strict=True)],
        declaration_id=declaration_id,
    )
    events = [
        {
            "event_id": treatment_read_event_id(read_id, answer.record_id),
            "kind": "record_read",
            "record_id": answer.record_id,
            "patient_pseudonym": patient.pseudonym,
            "grantee": profile.grantee_id,
            "purpose": purpose,
            "request_id": declaration_id,
            "consent_id": answer.consent_id if answer.admitted else None,
            "category": category,
            "decision": answer.decision,
            "reason": answer.reason,
        }
        for answer in answers
    ]
    logged = access_batch_log(batch_id=treatment_read_batch_id(read_id), events=events)
    records = [
        RecordRead(
            record_id=answer.record_id,
            category=category,
            version=versions[content.version_id].version,
            decision=answer.decision,
            reason=answer.reason,
            consent_id=answer.consent_id if answer.admitted else None,
            observations=_observations(content.plaintext) if answer.admitted else None,
        )
        for content, answer in zip(gated, answers, strict=True)
    ]
    read = TreatmentRead(
        read_id, patient.pseudonym, category, logged.tx_id, logged.block_number, records, purpose, declaration_id
    )
    log.info(
        "records_read",
        read_id=read_id,
        purpose=purpose,
        admitted=len(read.admitted),
        refused=read.refusals,
        tx_id=logged.tx_id,
    )
    return read


def _observations(plaintext: bytes | None) -> list[dict[str, Any]]:
    return bundle_observation_rows(bundle=json.loads(plaintext)) if plaintext is not None else []
