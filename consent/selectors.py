"""Reads: consents from the mirror for display, their history from the ledger."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Q, QuerySet
from django.utils import timezone

from consent.access import READ_REFUSED, patient_of, user_may_read_consents
from consent.fhir import FHIR_STATUSES, consent_to_fhir
from consent.models import Consent, ConsentStatus
from health_platform import bootstrap
from health_platform.errors import PermissionDenied
from health_platform.roles import Role, user_has_role
from health_platform.selectors import grantee_ids_of_user, values_among
from records.models import Patient


@dataclass(frozen=True)
class ConsentChange:
    tx_id: str
    block_number: int | None
    timestamp: datetime
    status: str


def consents_of_patient(*, patient: Patient) -> QuerySet[Consent]:
    return Consent.objects.filter(patient=patient)


def consent_get_for_patient(*, patient: Patient, consent_id: str) -> Consent | None:
    if "\x00" in consent_id:
        return None  # no consent id holds a NUL, and PostgreSQL cannot even be asked (text holds none)
    return Consent.objects.filter(patient=patient, consent_id=consent_id).first()


def consents_granted_to(*, user: Any) -> QuerySet[Consent]:
    """Consents naming the clinician `user` or their organisation."""
    return Consent.objects.filter(grantee__in=grantee_ids_of_user(user=user)).select_related("patient")


def consents_visible_to(*, user: Any) -> QuerySet[Consent]:
    """Everything `user` may list: a patient their own, a clinician theirs, an auditor all."""
    if user_has_role(user, Role.AUDITOR):
        return Consent.objects.select_related("patient")
    visible = Q(pk__in=[])
    own = patient_of(user)
    if own is not None:
        visible |= Q(patient=own)
    if user_has_role(user, Role.CLINICIAN):
        visible |= Q(grantee__in=grantee_ids_of_user(user=user))
    return Consent.objects.filter(visible).select_related("patient")


def consents_readable_by(*, user: Any) -> QuerySet[Consent]:
    """The consents `user` may list (consents_visible_to); PermissionDenied for a role that reads none (consent.access:
    a custodian, a user without a role), as the API refuses them."""
    if not user_may_read_consents(user):
        raise PermissionDenied(READ_REFUSED)
    return consents_visible_to(user=user)


def consent_as_fhir(*, consent: Consent) -> dict[str, Any]:
    """The consent as a FHIR R4 Consent (consent.fhir: standard codes, validated against the R4B model)."""
    return consent_to_fhir(consent)


def consents_with_fhir_status(queryset: QuerySet[Consent], statuses: set[str]) -> QuerySet[Consent]:
    """Filter by FHIR Consent.status as consent_as_fhir writes it (active, inactive; no consent has another)."""
    matching = queryset.none()
    for fhir_status in sorted(statuses & FHIR_STATUSES.keys()):
        for status in FHIR_STATUSES[fhir_status]:
            matching |= consents_with_effective_status(queryset, status)
    return matching


def consents_with_effective_status(queryset: QuerySet[Consent], status: str) -> QuerySet[Consent]:
    """Filter by active / expired / pending / revoked as of now."""
    now = timezone.now()
    if status == "revoked":
        return queryset.filter(status=ConsentStatus.REVOKED)
    live = queryset.filter(status=ConsentStatus.ACTIVE)
    if status == "active":
        return live.filter(valid_from__lte=now, valid_until__gt=now)
    if status == "expired":
        return live.filter(valid_until__lte=now)
    if status == "pending":
        return live.filter(valid_from__gt=now)
    return queryset.none()


def consents_listing(queryset: QuerySet[Consent], *, field: str, code: str) -> QuerySet[Consent]:
    """Consents whose `field` (purposes or categories, JSON lists of vocabulary codes) lists `code`.

    Matched in the database on the JSON text, quotes included: vocabulary codes are lower-case and hold
    no quote, so the match is exact. (JSON containment lookups are not available on SQLite.)
    """
    return queryset.filter(**{f"{field}__icontains": f'"{code}"'})


def patients_with_active_consent(*, grantees: list[str], purpose: str) -> QuerySet[Consent, UUID]:
    """Ids of the patients with an unrevoked consent (in the mirror) naming one of `grantees` for `purpose`:
    candidates for an analysis, which the ledger's gate then decides on."""
    active = Consent.objects.filter(grantee__in=grantees, status=ConsentStatus.ACTIVE)
    return consents_listing(active, field="purposes", code=purpose).values_list("patient_id", flat=True)


def consent_history(*, consent: Consent) -> list[ConsentChange]:
    """Every committed change of the consent, oldest first, read from the ledger."""
    return [
        ConsentChange(
            tx_id=change.tx_id,
            block_number=change.block_number,
            timestamp=datetime.fromisoformat(change.timestamp.replace("Z", "+00:00")),
            status=change.value["status"] if change.value else "deleted",
        )
        for change in bootstrap.contracts().consent_history(consent.patient.pseudonym, consent.consent_id)
    ]


def consents_granted_to_filtered(
    *,
    user: Any,
    q: str = "",
    category: str = "",
    purpose: str = "",
    status: str = "",
    valid_on: date | None = None,
) -> QuerySet[Consent]:
    """The consents naming `user` (or their organisation), newest first, narrowed by the clinician's filters:
    a pseudonym prefix, a data category, a purpose, an effective status as of now, a day the period covers."""
    consents = consents_granted_to(user=user)
    if q:
        consents = consents.filter(patient__pseudonym__startswith=q)
    if category:
        consents = consents_listing(consents, field="categories", code=category)
    if purpose:
        consents = consents_listing(consents, field="purposes", code=purpose)
    if status:
        consents = consents_with_effective_status(consents, status)
    if valid_on is not None:
        day_start = datetime.combine(valid_on, time.min, tzinfo=UTC)
        consents = consents.filter(valid_from__lt=day_start + timedelta(days=1), valid_until__gt=day_start)
    return consents.order_by("-granted_at", "consent_id")


def patients_with_consent_in_force_count(*, user: Any) -> int:
    """How many patients have a consent in force (as of now, in the mirror) naming `user` or their organisation."""
    active = consents_with_effective_status(consents_granted_to(user=user), "active")
    return active.values("patient_id").distinct().count()


def consents_revoked_among(*, consent_ids: Iterable[str]) -> set[str]:
    """Which of `consent_ids` the mirror holds as revoked (a consent the mirror does not hold is not among them), in
    one query per health_platform.selectors.IN_LIST_CHUNK ids."""
    return values_among(Consent.objects.filter(status=ConsentStatus.REVOKED), "consent_id", consent_ids)
