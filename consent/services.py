"""Writes: granting and revoking consent on the ledger, and the mirror that follows it.

Every change is a ledger transaction first; the mirror row is written only after the ledger has
committed it. If the ledger cannot be reached nothing is written anywhere and the caller gets
ledger_unavailable. The mirror can always be rebuilt from the ledger (consent_mirror_rebuild).
"""

import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from chaincode.validation import format_timestamp
from chaincode.vocabulary import CATEGORIES
from consent.access import user_may_change_consents_of
from consent.models import Consent
from health_platform import bootstrap
from health_platform.errors import LedgerRejected, PermissionDenied, SignatureRefused, ValidationFailed
from health_platform.model_catalogue import consent_purposes
from health_platform.selectors import grantee_get
from ledger import ContractRejected
from ledger.contracts import ConsentGrant, LedgerConsent, grant_document, revoke_document
from records.models import Patient

if TYPE_CHECKING:
    from consent.fhir import GrantTerms

log = structlog.get_logger(__name__)

consent_revoked = Signal()
"""Sent with `consent_id` and `purposes` once a revocation is on the ledger and in the mirror (a revoked consent
revoked again sends it again: receivers must be idempotent). Other apps follow revocations through it without
consent knowing them (training: the models trained under the consent count it)."""

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
    *,
    grantee_id: str,
    purposes: list[str],
    categories: list[str],
    valid_from: datetime,
    valid_until: datetime,
    now: datetime | None = None,
) -> ConsentTerms:
    """Refuse terms the platform cannot grant, with a code naming the field. Writes nothing.

    `now` is when the terms were set: the grant document's issued_at, when a signed document comes back."""
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
    now = now or timezone.now()
    if valid_until <= max(now, timezone.now()):
        raise ValidationFailed("The period is over already.", code="period_in_past", detail={"field": "valid_until"})
    if valid_from < now - BACKDATING_TOLERANCE:
        raise ValidationFailed(
            "A consent cannot start in the past.", code="period_in_past", detail={"field": "valid_from"}
        )
    return ConsentTerms(grantee_id, checked_purposes, checked_categories, valid_from, valid_until)


def consent_grant_document(
    *,
    actor: Any,
    patient: Patient,
    grantee_id: str,
    purposes: list[str],
    categories: list[str],
    valid_from: datetime,
    valid_until: datetime,
    consent_id: str | None = None,
) -> dict[str, Any]:
    """The document the patient signs to grant one consent: the terms checked, a new consent id. Writes nothing."""
    terms = consent_terms_check(
        grantee_id=grantee_id, purposes=purposes, categories=categories, valid_from=valid_from, valid_until=valid_until
    )
    return _grant_document(actor=actor, patient=patient, grants=[(terms, consent_id)])


def _grant_document(
    *, actor: Any, patient: Patient, grants: Sequence[tuple[ConsentTerms, str | None]]
) -> dict[str, Any]:
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("A consent can only be granted by the patient it concerns.")
    return grant_document(
        patient.pseudonym,
        [
            ConsentGrant(
                consent_id=consent_id or f"cns-{uuid.uuid4().hex}",
                grantee=terms.grantee_id,
                purposes=terms.purposes,
                categories=terms.categories,
                valid_from=format_timestamp(terms.valid_from),
                valid_until=format_timestamp(terms.valid_until),
            )
            for terms, consent_id in grants
        ],
        issued_at=format_timestamp(timezone.now()),
    )


def consent_grant(*, actor: Any, patient: Patient, document: Any, signature: Any) -> list[Consent]:
    """Grant the consents of a document `patient` (who must be `actor`) signed with their passkey: the terms are
    checked again (the document came back from the browser), then one ledger transaction for all, then the mirror.
    The ledger verifies the signature; the platform cannot grant what the patient did not sign."""
    if not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("A consent can only be granted by the patient it concerns.")
    document = _document(document, action="grant_consent", patient=patient)
    grants = document.get("grants")
    if (
        not isinstance(grants, list)
        or not 1 <= len(grants) <= MAX_CODES
        or not all(isinstance(g, dict) for g in grants)
    ):
        raise ValidationFailed("The document's grants are malformed.", code="invalid_document")
    issued = _parse_timestamp(document.get("issued_at"))
    for grant in grants:
        consent_terms_check(
            grantee_id=grant.get("grantee"),
            purposes=grant.get("purposes"),
            categories=grant.get("categories"),
            valid_from=_parse_timestamp(grant.get("valid_from")),
            valid_until=_parse_timestamp(grant.get("valid_until")),
            now=issued,
        )
    granted = signed_call(lambda: bootstrap.contracts().grant_consents(document, signature))
    consents = [Consent.objects.create(**_mirror_fields(entry), patient=patient) for entry in granted]
    for consent in consents:
        log.info(
            "consent_granted",
            consent_id=consent.consent_id,
            patient_id=str(patient.pk),
            tx_id=consent.granted_tx_id,
            block=consent.granted_block,
        )
    return consents


def consent_revoke_document(*, actor: Any, consent: Consent) -> dict[str, Any]:
    """The document the patient signs to revoke `consent`. Writes nothing."""
    if not user_may_change_consents_of(actor, consent.patient):
        raise PermissionDenied("A consent can only be revoked by the patient it concerns.")
    return revoke_document(consent.patient.pseudonym, consent.consent_id, issued_at=format_timestamp(timezone.now()))


def consent_revoke(*, actor: Any, consent: Consent, document: Any, signature: Any) -> Consent:
    """Revoke a consent by a revocation document its patient signed. Idempotent: revoking a revoked consent
    writes nothing to the ledger."""
    if not user_may_change_consents_of(actor, consent.patient):
        raise PermissionDenied("A consent can only be revoked by the patient it concerns.")
    document = _document(document, action="revoke_consent", patient=consent.patient)
    if document.get("consent_id") != consent.consent_id:
        raise ValidationFailed("The document revokes another consent.", code="invalid_document")
    try:
        revoked = signed_call(
            lambda: bootstrap.contracts().revoke_consent(document, signature, granted_block=consent.granted_block)
        )
    except ContractRejected as rejection:
        if rejection.code != "not_found":
            raise
        raise LedgerRejected(
            "The ledger holds no such consent.", code="consent_not_on_ledger", detail={"consent_id": consent.consent_id}
        ) from rejection
    log.info("consent_revoked", consent_id=consent.consent_id, tx_id=revoked.revoked_tx_id, block=revoked.revoked_block)
    Consent.objects.filter(pk=consent.pk).update(**_mirror_fields(revoked))
    consent.refresh_from_db()
    consent_revoked.send(sender=Consent, consent_id=consent.consent_id, purposes=list(consent.purposes))
    return consent


# The contract's refusals of a signature (chaincode.webauthn, chaincode.contracts.patient_keys): answered as
# SignatureRefused with the contract's code, so that a client can tell "sign again" from "the ledger is away".
SIGNATURE_REFUSALS = frozenset(
    {
        "signature_required",
        "signature_malformed",
        "signature_invalid",
        "signature_stale",
        "unknown_key",
        "foreign_key",
        "key_revoked",
        "not_an_assertion",
        "challenge_mismatch",
        "origin_mismatch",
        "rp_mismatch",
        "user_not_verified",
        "counter_regressed",
        "replayed",
    }
)
_T = TypeVar("_T")


def signed_call(call: Callable[[], _T]) -> _T:
    """Run a ledger call that carries a patient's signature; its refusals of the signature as SignatureRefused."""
    try:
        return call()
    except ContractRejected as rejection:
        if rejection.code not in SIGNATURE_REFUSALS:
            raise
        raise SignatureRefused(
            "The ledger did not accept the passkey's signature. Sign again with one of your passkeys.",
            code=rejection.code,
        ) from rejection


def _document(document: Any, *, action: str, patient: Patient) -> dict[str, Any]:
    """A signed document as it came back from the browser: an object of `action` naming `patient`."""
    if not isinstance(document, dict) or document.get("action") != action:
        raise ValidationFailed(f"The document must be a {action} document.", code="invalid_document")
    if document.get("patient_pseudonym") != patient.pseudonym:
        raise PermissionDenied("A patient can sign only their own consents.")
    return document


def _parse_timestamp(value: Any) -> datetime:
    try:
        if isinstance(value, str):
            return _parse(value)
    except ValueError:
        pass
    raise ValidationFailed("The document holds a malformed time.", code="invalid_document")


def consent_mirror_rebuild(*, patients_per_transaction: int = 1000) -> int:
    """Replace the mirror with what the ledger holds for every known patient. Returns the row count.

    A few patients at a time: their consents read from the ledger, then their rows replaced in one short
    transaction. Memory holds one group's consents, not a hospital's, and the web process is never kept from
    writing for long. Each patient's rows are at every moment either the ledger's or those the mirror held; a
    ledger that stops answering half way leaves the patients not yet reached as they were."""
    contracts = bootstrap.contracts()
    count = 0
    patients = Patient.objects.order_by("pk").only("pk", "pseudonym").iterator(chunk_size=patients_per_transaction)
    while group := list(itertools.islice(patients, patients_per_transaction)):
        rows = [
            Consent(patient=patient, **_mirror_fields(ledger_consent))
            for patient in group
            for ledger_consent in contracts.consents_of_patient(patient.pseudonym)
        ]
        with transaction.atomic():
            Consent.objects.filter(patient__in=[patient.pk for patient in group]).delete()
            Consent.objects.bulk_create(rows)
        count += len(rows)
    log.info("consent_mirror_rebuilt", consents=count)
    return count


def _codes(values: Any, vocabulary: dict[str, str], *, field: str, code: str) -> list[str]:
    if not isinstance(values, list | tuple) or not values or len(values) > MAX_CODES:
        raise ValidationFailed(f"Choose at least one of the {field}.", code=code, detail={"field": field})
    unknown = [index for index, value in enumerate(values) if not isinstance(value, str) or value not in vocabulary]
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
        "grant_signature": ledger_consent.grant_signature or "",
        "revoke_signature": ledger_consent.revoke_signature or "",
    }


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def consent_import_fhir(*, actor: Any, resource: Any) -> dict[str, Any]:
    """The grant document for every grant a FHIR Consent describes, for its patient (who must be `actor`) to sign.

    Every provision is mapped (consent.fhir) and every grant checked against the grant rules; a refusal names the
    provision (detail.provision). Signed and submitted (consent_grant), the document grants all of them in one
    ledger transaction or none. The resource's own id is not reused: consent ids are the platform's.
    """
    from consent.fhir import consent_from_fhir

    document = consent_from_fhir(resource)
    patient = Patient.objects.filter(pseudonym=document.patient_pseudonym).first()
    if patient is None or not user_may_change_consents_of(actor, patient):
        raise PermissionDenied("A consent can only be imported by the patient it concerns.")
    checked = []
    for terms in document.grants:
        try:
            checked.append((consent_terms_check(**_grant_fields(terms)), None))
        except ValidationFailed as refused:
            refused.detail = {**(refused.detail or {}), "provision": terms.provision}
            raise
    return _grant_document(actor=actor, patient=patient, grants=checked)


def _grant_fields(terms: "GrantTerms") -> dict[str, Any]:
    return {
        "grantee_id": terms.grantee_id,
        "purposes": terms.purposes,
        "categories": terms.categories,
        "valid_from": terms.valid_from,
        "valid_until": terms.valid_until,
    }
