"""Writes: ingesting FHIR bundles as encrypted, versioned records, and anchoring them on the ledger.

An ingest stores all of its records in one database transaction, then anchors every new version
in one ledger transaction. The ledger being down does not lose an ingest: the versions stay
"pending" (never analysed), and records.tasks.anchor_pending_records anchors them later.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.db import transaction

from ledger import ContractRejected, LedgerError
from records import tasks
from records.anchoring import record_versions_anchor_of
from records.bundles import ParsedRecord, bundle_entry_count, bundle_parse
from records.crypto import RecordCipher, patient_pseudonym, record_cipher, record_seal
from records.errors import BundleRejected, BundleTooLarge
from records.features import bundle_features, features_seal
from records.models import IngestOutcome, IngestRun, Patient, PatientIdentifier, Record, RecordVersion

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
    patient_entry: int = -1
    entries: tuple[int, ...] = ()


@dataclass(frozen=True)
class IngestResult:
    records: list[IngestedRecord]
    run: "IngestRun | None" = None

    @property
    def all_anchored(self) -> bool:
        return all(record.anchored for record in self.records)


def record_ingest(*, raw_body: bytes, actor: Any, source: str = "api") -> IngestResult:
    """Validate a FHIR Bundle, store one encrypted record version per (patient, category), anchor them.

    A record whose content hashes to its latest version's hash is left as it is ("unchanged").
    Everything is stored in one database transaction, or nothing is; the anchors of all new
    versions then go to the ledger in one transaction. If the ledger cannot be reached the versions
    stay pending and the anchoring task is scheduled.

    Raises BundleRejected / BundleTooLarge (records.errors) for input that cannot be ingested. An ingest that
    stored its records is kept in the ingest history (`source`: "api" or "portal"; counts, no content).
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
        for version in RecordVersion.objects.filter(pk__in=[version.pk for version, _ in stored])
        .select_related("record__patient")
        .defer("ciphertext")
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
                # The patient's, who may have been known by another of the identifiers first.
                patient_pseudonym=fresh.record.patient.pseudonym,
                anchored=fresh.is_anchored,
                tx_id=fresh.anchor_tx_id or None,
                block_number=fresh.anchor_block,
                unchanged=unchanged,
                patient_entry=parsed.patient_entry,
                entries=parsed.entries,
            )
        )
    run = IngestRun.objects.create(
        actor=_user_or_none(actor),
        source=source,
        outcome=IngestOutcome.STORED,
        body_bytes=len(raw_body),
        body_sha256=hashlib.sha256(raw_body).hexdigest(),
        entries=bundle_entry_count(raw_body),
        records_new=sum(not result.unchanged for result in results),
        records_unchanged=sum(result.unchanged for result in results),
        records_pending=sum(not result.anchored for result in results),
    )
    log.info(
        "records_ingested",
        actor_id=getattr(actor, "pk", None),
        record_ids=[str(result.record_id) for result in results],
        new_versions=sum(not result.unchanged for result in results),
        pending=sum(not result.anchored for result in results),
    )
    return IngestResult(records=results, run=run)


def _patient_of(parsed: ParsedRecord) -> Patient:
    """The patient any of `parsed`'s identifiers names (a new one, pseudonymised by the first, when none does);
    each identifier not yet known is added to them. Refused (patient_identifier_conflict): identifiers that name
    two patients already ingested, which only a person can tell apart or merge."""
    pseudonyms = list(dict.fromkeys(patient_pseudonym(key) for key in parsed.patient_keys or (parsed.patient_key,)))
    known = PatientIdentifier.objects.filter(pseudonym__in=pseudonyms).select_related("patient")
    patients = {identifier.patient_id: identifier.patient for identifier in known}
    if len(patients) > 1:
        raise BundleRejected(
            "The Patient's identifiers belong to two patients already ingested.",
            code="patient_identifier_conflict",
            detail={"entry": parsed.patient_entry, "path": "resource.identifier"},
        )
    patient = next(iter(patients.values()), None)
    if patient is None:
        patient, _ = Patient.objects.get_or_create(pseudonym=pseudonyms[0])
    known_pseudonyms = {identifier.pseudonym for identifier in known}
    PatientIdentifier.objects.bulk_create(
        [PatientIdentifier(patient=patient, pseudonym=p) for p in pseudonyms if p not in known_pseudonyms],
        ignore_conflicts=True,
    )
    return patient


def _record_store(*, parsed: ParsedRecord, cipher: RecordCipher) -> tuple[RecordVersion, bool]:
    """Store `parsed` as the next version of its record; return (version, unchanged).

    Must run inside the ingest's transaction: the record row is locked while its next version
    number is chosen, so concurrent ingests for one record cannot both write version n+1.
    """
    patient = _patient_of(parsed)
    record, _ = Record.objects.get_or_create(patient=patient, category=parsed.category)
    list(Record.objects.select_for_update().filter(pk=record.pk).values_list("pk", flat=True))
    latest = record.versions.defer("ciphertext").order_by("-version").first()
    if latest is not None and latest.sha256 == parsed.sha256:
        return latest, True
    number = 1 if latest is None else latest.version + 1
    key_id, ciphertext, encoding = record_seal(cipher, canonical=parsed.canonical, record_id=record.pk, version=number)
    features = features_seal(
        cipher,
        features=bundle_features(parsed.canonical) or {},
        record_sha256=parsed.sha256,
        record_id=record.pk,
        version=number,
        record_ciphertext=ciphertext,
    )
    if features.key_id != key_id:
        raise RuntimeError("the record cipher's active key changed during encryption")
    version = RecordVersion.objects.create(
        record=record,
        version=number,
        sha256=parsed.sha256,
        key_id=key_id,
        content_encoding=encoding,
        ciphertext=ciphertext,
        features=features.sealed,
        features_sha256=features.digest,
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


# --- the custodian's upload, with its per-entry report ---------------------------------------------------


@dataclass(frozen=True)
class EntryReport:
    """What became of one entry of an uploaded bundle, by its index and a stable code (never its values).

    status: stored (a new record version), unchanged (the record already held this content), patient (the
    Patient resource of stored records), refused (the entry the refusal names), not_stored (the bundle was
    refused as a whole: ingest stores all of a bundle or none of it).
    """

    index: int
    status: str
    code: str
    category: str = ""
    record_id: str = ""
    version: int | None = None
    path: str = ""

    @property
    def label(self) -> str:
        return ENTRY_STATUS_LABELS.get(self.status, self.status)


ENTRY_STATUS_LABELS = {
    "stored": "Stored",
    "unchanged": "Unchanged",
    "patient": "Patient",
    "refused": "Refused",
    "not_stored": "Not stored",
}


@dataclass(frozen=True)
class IngestReport:
    """An upload's outcome: stored or refused (with the refusal's stable code), and a report per entry."""

    run: IngestRun
    entries: list[EntryReport]
    code: str = ""
    message: str = ""
    status: int = 200
    records: list[IngestedRecord] = field(default_factory=list)

    @property
    def stored(self) -> bool:
        return self.run.outcome == IngestOutcome.STORED

    def count(self, status: str) -> int:
        return sum(entry.status == status for entry in self.entries)


def record_ingest_upload(*, raw_body: bytes, actor: Any) -> IngestReport:
    """Ingest a bundle uploaded in the portal and report on every entry; a refused bundle is kept in the ingest
    history too (its code and counts), so that the custodian sees every upload, stored or not."""
    try:
        result = record_ingest(raw_body=raw_body, actor=actor, source="portal")
    except (BundleRejected, BundleTooLarge) as error:
        entry_count = bundle_entry_count(raw_body) if isinstance(error, BundleRejected) else 0
        run = IngestRun.objects.create(
            actor=_user_or_none(actor),
            source="portal",
            outcome=IngestOutcome.REFUSED,
            refusal_code=error.code,
            body_bytes=len(raw_body),
            body_sha256=hashlib.sha256(raw_body).hexdigest(),
            entries=entry_count,
        )
        log.info("ingest_upload_refused", actor_id=getattr(actor, "pk", None), code=error.code, run_id=str(run.pk))
        return IngestReport(
            run=run,
            entries=_refused_entries(error, entry_count),
            code=error.code,
            message=error.message,
            status=error.status,
        )
    stored = result.run
    assert stored is not None  # record_ingest keeps every ingest that stored its records
    return IngestReport(run=stored, entries=_stored_entries(result, stored.entries), records=result.records)


def _stored_entries(result: IngestResult, entry_count: int) -> list[EntryReport]:
    found: dict[int, EntryReport] = {}
    for record in result.records:
        status = "unchanged" if record.unchanged else "stored"
        code = status if record.anchored else f"{status}_anchoring_pending"
        for index in record.entries:
            found[index] = EntryReport(
                index=index,
                status=status,
                code=code,
                category=record.category,
                record_id=str(record.record_id),
                version=record.version,
            )
        patient = EntryReport(index=record.patient_entry, status="patient", code="patient")
        found.setdefault(record.patient_entry, patient)
    return [
        found.get(index) or EntryReport(index=index, status="not_stored", code="no_observation")
        for index in range(entry_count)
    ]


def _refused_entries(error: BundleRejected | BundleTooLarge, entry_count: int) -> list[EntryReport]:
    """The entries the refusal names (index and field path, from its detail), then every other entry, not stored."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    named: dict[int, str] = {}
    errors = detail.get("errors")
    items: list[Any] = errors if isinstance(errors, list) else [detail]
    for item in items:
        if not isinstance(item, dict):
            continue
        listed = item.get("entries")
        indexes: list[Any] = listed if isinstance(listed, list) else [item.get("entry")]
        for index in indexes:
            if isinstance(index, int) and index not in named:
                named[index] = str(item.get("path", ""))
    reports = [
        EntryReport(index=index, status="refused", code=error.code, path=path) for index, path in sorted(named.items())
    ]
    reports += [
        EntryReport(index=index, status="not_stored", code="bundle_refused")
        for index in range(entry_count)
        if index not in named
    ]
    return sorted(reports, key=lambda entry: entry.index)


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None
