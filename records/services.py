"""Writes: ingesting FHIR bundles as encrypted, versioned records, and anchoring them on the ledger.

An ingest stores all of its records in one database transaction, then anchors every new version
in one ledger transaction. The ledger being down does not lose an ingest: the versions stay
"pending" (never analysed), and records.tasks.anchor_pending_records anchors them later.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.db import transaction

from ledger import ContractRejected, LedgerError
from records import tasks
from records.anchoring import record_versions_anchor_of
from records.bundles import ParsedRecord, bundle_parse
from records.crypto import RecordCipher, patient_pseudonym, record_cipher, record_seal
from records.models import Patient, Record, RecordVersion

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IngestedRecord:
    record_id: UUID
    version: int
    category: str
    sha256: str
    patient_pseudonym: str
    anchored: bool
    tx_id: str | None
    block_number: int | None
    unchanged: bool


@dataclass(frozen=True)
class IngestResult:
    records: list[IngestedRecord]

    @property
    def all_anchored(self) -> bool:
        return all(record.anchored for record in self.records)


def record_ingest(*, raw_body: bytes, actor: Any) -> IngestResult:
    """Validate a FHIR Bundle, store one encrypted record version per (patient, category), anchor them.

    A record whose content hashes to its latest version's hash is left as it is ("unchanged").
    Everything is stored in one database transaction, or nothing is; the anchors of all new
    versions then go to the ledger in one transaction. If the ledger cannot be reached the versions
    stay pending and the anchoring task is scheduled.

    Raises BundleRejected / BundleTooLarge (records.errors) for input that cannot be ingested.
    """
    parsed_records = bundle_parse(raw_body)
    cipher = record_cipher()
    with transaction.atomic():
        stored = [_record_store(parsed=parsed, cipher=cipher) for parsed in parsed_records]

    to_anchor = {version.record_id for version, _unchanged in stored if not version.is_anchored}
    if to_anchor:
        _anchor_records_after_ingest(record_ids=to_anchor)

    current = {
        version.pk: version
        for version in RecordVersion.objects.filter(pk__in=[version.pk for version, _ in stored]).defer("ciphertext")
    }
    results = []
    for (version, unchanged), parsed in zip(stored, parsed_records, strict=True):
        fresh = current[version.pk]
        results.append(
            IngestedRecord(
                record_id=fresh.record_id,
                version=fresh.version,
                category=parsed.category,
                sha256=fresh.sha256,
                patient_pseudonym=patient_pseudonym(parsed.patient_key),
                anchored=fresh.is_anchored,
                tx_id=fresh.anchor_tx_id or None,
                block_number=fresh.anchor_block,
                unchanged=unchanged,
            )
        )
    log.info(
        "records_ingested",
        actor_id=getattr(actor, "pk", None),
        record_ids=[str(result.record_id) for result in results],
        new_versions=sum(not result.unchanged for result in results),
        pending=sum(not result.anchored for result in results),
    )
    return IngestResult(records=results)


def _record_store(*, parsed: ParsedRecord, cipher: RecordCipher) -> tuple[RecordVersion, bool]:
    """Store `parsed` as the next version of its record; return (version, unchanged).

    Must run inside the ingest's transaction: the record row is locked while its next version
    number is chosen, so concurrent ingests for one record cannot both write version n+1.
    """
    patient, _ = Patient.objects.get_or_create(pseudonym=patient_pseudonym(parsed.patient_key))
    record, _ = Record.objects.get_or_create(patient=patient, category=parsed.category)
    list(Record.objects.select_for_update().filter(pk=record.pk).values_list("pk", flat=True))
    latest = record.versions.defer("ciphertext").order_by("-version").first()
    if latest is not None and latest.sha256 == parsed.sha256:
        return latest, True
    number = 1 if latest is None else latest.version + 1
    key_id, ciphertext, encoding = record_seal(cipher, canonical=parsed.canonical, record_id=record.pk, version=number)
    version = RecordVersion.objects.create(
        record=record,
        version=number,
        sha256=parsed.sha256,
        key_id=key_id,
        content_encoding=encoding,
        ciphertext=ciphertext,
    )
    return version, False


def _anchor_records_after_ingest(*, record_ids: set[UUID]) -> None:
    try:
        record_versions_anchor_of(record_ids=record_ids)
    except ContractRejected as rejection:
        # Retrying will not help; the versions stay pending (never analysed) and are logged.
        log.error("record_anchor_rejected", code=rejection.code, record_ids=sorted(str(i) for i in record_ids))
    except LedgerError as error:
        log.warning("record_anchor_deferred", error=type(error).__name__, record_ids=sorted(str(i) for i in record_ids))
        transaction.on_commit(_schedule_anchoring, robust=True)


def _schedule_anchoring() -> None:
    tasks.anchor_pending_records.apply_async(countdown=settings.ANCHOR_RETRY_COUNTDOWN_SECONDS)


def patient_link_user(*, patient: Patient, user: Any) -> Patient:
    """Link a portal account to a patient (one account per patient, one patient per account).

    Any other patient linked to `user` is unlinked first, so the link can be moved.
    """
    with transaction.atomic():
        Patient.objects.filter(user=user).exclude(pk=patient.pk).update(user=None)
        if patient.user_id != user.pk:
            patient.user = user
            patient.save(update_fields=["user"])
    log.info("patient_user_linked", patient_id=str(patient.pk), user_id=user.pk)
    return patient
