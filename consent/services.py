"""Writes: granting and revoking consent on the ledger, and the mirror that follows it.

Every change is a ledger transaction first; the mirror row is written only after the ledger has
committed it. If the ledger cannot be reached nothing is written anywhere and the caller gets
ledger_unavailable. The mirror can always be rebuilt from the ledger (consent_mirror_rebuild).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from django.db import transaction
from django.utils import timezone

from chaincode.validation import format_timestamp
from chaincode.vocabulary import CATEGORIES
from consent.access import user_may_change_consents_of
from consent.models import Consent
from health_platform import bootstrap
from health_platform.errors import LedgerRejected, PermissionDenied, ValidationFailed
from health_platform.model_catalogue import consent_purposes
from health_platform.selectors import grantee_get
from ledger import ContractRejected
from ledger.contracts import ConsentGrant, LedgerConsent
from records.models import Patient

if TYPE_CHECKING:
    from consent.fhir import GrantTerms

log = structlog.get_logger(__name__)

# A grant may start this much before "now" (clocks differ, forms take time to fill); never earlier.
BACKDATING_TOLERANCE = timedelta(minutes=5)
MAX_CODES = 32


@dataclass(frozen=True)
class ConsentTerms:
    """What a patient grants, checked against the vocabulary and the directory."""

    grantee_id: str
    purposes: list[str]
    categories: list[str]
    valid_from: datetime
    valid_until: datetime


def consent_terms_check(
    *, grantee_id: str, purposes: list[str], categories: list[str], valid_from: datetime, valid_until: datetime
) -> ConsentTerms:
    """Refuse terms the platform cannot grant, with a code naming the field. Writes nothing."""
    grantee = grantee_get(grantee_id=grantee_id) if isinstance(grantee_id, str) else None
    if grantee is None:
        raise ValidationFailed(
            "The grantee is not a known clinician or organisation.", code="unknown_grantee", detail={"field": "grantee"}
        )
    if not grantee.active:
        raise ValidationFailed(
            "The grantee has been deactivated in the directory.", code="grantee_inactive", detail={"field": "grantee"}
        )
    checked_purposes = _codes(purposes, consent_purposes(), field="purposes", code="unknown_purpose")
    checked_categories = _codes(categories, CATEGORIES, field="categories", code="unknown_category")
    if valid_from.tzinfo is None or valid_until.tzinfo is None:
        raise ValidationFailed("Dates must carry a time zone.", code="invalid_period", detail={"field": "valid_from"})
    if valid_until <= valid_from:
        raise ValidationFailed(
            "The end of the period must be after its start.", code="invalid_period", detail={"field": "valid_until"}
        )
    now = timezone.now()
    if valid_until <= now:
        raise ValidationFailed("The period is over already.", code="period_in_past", detail={"field": "valid_until"})
    if valid_from < now - BACKDATING_TOLERANCE:
        raise ValidationFailed(
            "A consent cannot start in the past.", code="period_in_past", detail={"field": "valid_from"}
        )
    return ConsentTerms(grantee_id, checked_purposes, checked_categories, valid_from, valid_until)


def consent_grant(
    *,
    actor: Any,
    patient: Patient,
    grantee_id: str,
    purposes: list[str],
    categories: list[str],
    valid_from: datetime,
    valid_until: datetime,
    consent_id: str | None = None,
) -> Consent:
    """Grant consent as `patient` (who must be `actor`): a ledger transaction, then the mirror row."""
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("A consent can only be granted by the patient it concerns.")
    terms = consent_terms_check(
        grantee_id=grantee_id, purposes=purposes, categories=categories, valid_from=valid_from, valid_until=valid_until
    )
    consent_id = consent_id or f"cns-{uuid.uuid4().hex}"
    granted = bootstrap.contracts().grant_consent(
        ConsentGrant(
            consent_id=consent_id,
            patient_pseudonym=patient.pseudonym,
            grantee=terms.grantee_id,
            purposes=terms.purposes,
            categories=terms.categories,
            valid_from=format_timestamp(terms.valid_from),
            valid_until=format_timestamp(terms.valid_until),
        )
    )
    consent = Consent.objects.create(**_mirror_fields(granted), patient=patient)
    log.info(
        "consent_granted",
        consent_id=consent_id,
        patient_id=str(patient.pk),
        tx_id=granted.granted_tx_id,
        block=granted.granted_block,
    )
    return consent


def consent_revoke(*, actor: Any, consent: Consent) -> Consent:
    """Revoke a consent. Idempotent: revoking a revoked consent writes nothing to the ledger."""
    if not user_may_change_consents_of(actor, consent.patient):
        raise PermissionDenied("A consent can only be revoked by the patient it concerns.")
    try:
        revoked = bootstrap.contracts().revoke_consent(consent.consent_id, granted_block=consent.granted_block)
    except ContractRejected as rejection:
        if rejection.code != "not_found":
            raise
        raise LedgerRejected(
            "The ledger holds no such consent.", code="consent_not_on_ledger", detail={"consent_id": consent.consent_id}
        ) from rejection
    log.info("consent_revoked", consent_id=consent.consent_id, tx_id=revoked.revoked_tx_id, block=revoked.revoked_block)
    Consent.objects.filter(pk=consent.pk).update(**_mirror_fields(revoked))
    consent.refresh_from_db()
    return consent


def consent_mirror_rebuild() -> int:
    """Replace the mirror with what the ledger holds for every known patient. Returns the row count."""
    contracts = bootstrap.contracts()
    rows = [
        Consent(patient=patient, **_mirror_fields(ledger_consent))
        for patient in Patient.objects.order_by("pk").iterator()
        for ledger_consent in contracts.consents_of_patient(patient.pseudonym)
    ]
    with transaction.atomic():
        Consent.objects.all().delete()
        Consent.objects.bulk_create(rows)
    log.info("consent_mirror_rebuilt", consents=len(rows))
    return len(rows)


def _codes(values: Any, vocabulary: dict[str, str], *, field: str, code: str) -> list[str]:
    if not isinstance(values, list | tuple) or not values or len(values) > MAX_CODES:
        raise ValidationFailed(f"Choose at least one of the {field}.", code=code, detail={"field": field})
    unknown = [index for index, value in enumerate(values) if value not in vocabulary]
    if unknown:
        raise ValidationFailed(
            f"Unknown {field}; allowed: {', '.join(sorted(vocabulary))}.",
            code=code,
            detail={"field": field, "indexes": unknown},
        )
    return sorted(set(values))


def _mirror_fields(ledger_consent: LedgerConsent) -> dict[str, Any]:
    return {
        "consent_id": ledger_consent.consent_id,
        "grantee": ledger_consent.grantee,
        "purposes": ledger_consent.purposes,
        "categories": ledger_consent.categories,
        "valid_from": _parse(ledger_consent.valid_from),
        "valid_until": _parse(ledger_consent.valid_until),
        "status": ledger_consent.status,
        "granted_at": _parse(ledger_consent.granted_at),
        "granted_tx_id": ledger_consent.granted_tx_id,
        "granted_block": ledger_consent.granted_block,
        "revoked_at": _parse(ledger_consent.revoked_at) if ledger_consent.revoked_at else None,
        "revoked_tx_id": ledger_consent.revoked_tx_id or "",
        "revoked_block": ledger_consent.revoked_block,
    }


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def consent_import_fhir(*, actor: Any, resource: Any) -> list[Consent]:
    """Grant every grant a FHIR Consent describes, as its patient (who must be `actor`): all of them or none.

    Every provision is mapped (consent.fhir) and every grant checked against the grant rules before the first is
    written; a refusal names the provision (detail.provision). Should the ledger fail part way through, the grants
    already written are revoked again (both stay in the ledger's history: it is append-only), so that no part of a
    refused import stays in force. The resource's own id is not reused: consent ids are the platform's.
    """
    from consent.fhir import consent_from_fhir

    document = consent_from_fhir(resource)
    patient = Patient.objects.filter(pseudonym=document.patient_pseudonym).first()
    if patient is None or not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("A consent can only be imported by the patient it concerns.")
    for terms in document.grants:
        try:
            consent_terms_check(**_grant_fields(terms))
        except ValidationFailed as refused:
            refused.detail = {**(refused.detail or {}), "provision": terms.provision}
            raise
    written: list[Consent] = []
    try:
        for terms in document.grants:
            written.append(consent_grant(actor=actor, patient=patient, **_grant_fields(terms)))
    except Exception:
        _consents_withdraw(actor=actor, consents=written)
        raise
    log.info("consent_imported", patient_id=str(patient.pk), consent_ids=[c.consent_id for c in written])
    return written


def _grant_fields(terms: "GrantTerms") -> dict[str, Any]:
    return {
        "grantee_id": terms.grantee_id,
        "purposes": terms.purposes,
        "categories": terms.categories,
        "valid_from": terms.valid_from,
        "valid_until": terms.valid_until,
    }


def _consents_withdraw(*, actor: Any, consents: list[Consent]) -> None:
    """Revoke the grants of an import that failed part way; a revocation that fails too is logged, not raised
    (the caller re-raises the import's own error)."""
    for consent in consents:
        try:
            consent_revoke(actor=actor, consent=consent)
        except Exception:
            log.error("consent_import_withdrawal_failed", consent_id=consent.consent_id)
