"""Writes: ingesting FHIR bundles as encrypted, versioned records, and anchoring them on the ledger.

An ingest stores all of its records in one database transaction, then anchors every new version
in one ledger transaction. The ledger being down does not lose an ingest: the versions stay
"pending" (never analysed), and records.tasks.anchor_pending_records anchors them later.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from ledger import ContractRejected, LedgerError
from records import erasure, tasks
from records.anchoring import record_versions_anchor_of, record_versions_anchor_pending
from records.bundles import ParsedRecord, bundle_entry_count, bundle_parse
from records.crypto import RecordCipher, patient_pseudonym, record_open, record_seal
from records.errors import BundleRejected, BundleTooLarge, CiphertextInvalid, IngestInterrupted
from records.features import bundle_features, features_reseal, features_seal
from records.models import (
    BulkIngestJob,
    IngestOutcome,
    IngestRun,
    Patient,
    PatientErasure,
    PatientIdentifier,
    Record,
    RecordVersion,
)
from records.ndjson import ExportIndex, PatientRefusal, ndjson_files, ndjson_index, ndjson_slices_records
from records.patient_keys import (
    DATA_KEY_PREFIX,
    ERASED_KEY_ID,
    patient_data_keys_rewrap,
    patient_keyrings,
    record_keys,
)

log = structlog.get_logger(__name__)

# A patient's erasure (records.erasure), as other apps reach it.
patient_erase = erasure.patient_erase
patient_erasure_check = erasure.patient_erasure_check
patient_erasure_destroy = erasure.patient_erasure_destroy
ErasureRefused = erasure.ErasureRefused


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
    with transaction.atomic():
        stored = _record_versions_store(parsed_records=parsed_records)

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


def _record_versions_store(*, parsed_records: list[ParsedRecord]) -> list[tuple[RecordVersion, bool]]:
    """Store each of `parsed_records` as the next version of its record; return (version, unchanged) for each.

    The one way a record version is stored (the bundle ingest and the bulk ingest both come here), in a few
    queries whatever the number of records: patients by their identifiers, records, their latest versions, then
    one INSERT of the new versions. A record whose content hashes to its latest version's hash is left as it is
    (unchanged). Must run inside the ingest's transaction: the records' rows are locked while their next version
    numbers are chosen, so concurrent ingests for one record cannot both write version n+1.

    Each version and its features are sealed under its patient's data key (records.patient_keys), made here for a
    patient who has none yet.

    Refused, naming the record's patient_entry: patient_identifier_conflict (identifiers that name two patients
    already ingested, which only a person can tell apart or merge); patient_erased (the patient asked to be erased:
    nothing of theirs is stored again under the identifiers they were known by, from the moment the erasure begins).
    """
    patients = _patients_of(parsed_records)
    erasing = set(PatientErasure.objects.filter(patient__in=patients).values_list("patient_id", flat=True))
    for parsed, patient in zip(parsed_records, patients, strict=True):
        if patient.pk in erasing:
            raise BundleRejected(
                "The Patient's data was erased at their request: nothing of theirs is stored again.",
                code="patient_erased",
                detail={"entry": parsed.patient_entry, "path": "resource.identifier"},
            )
    keyrings = patient_keyrings(patients=patients)
    records = _records_of(parsed_records, patients)
    record_ids = sorted({record.pk for record in records})
    list(Record.objects.select_for_update().filter(pk__in=record_ids).order_by("pk").values_list("pk", flat=True))
    newer = RecordVersion.objects.filter(record=OuterRef("record"), version__gt=OuterRef("version"))
    latest = {
        version.record_id: version
        for version in RecordVersion.objects.filter(record_id__in=record_ids).exclude(Exists(newer)).defer("ciphertext")
    }
    stored: list[tuple[RecordVersion, bool]] = []
    new_versions = []
    for parsed, record in zip(parsed_records, records, strict=True):
        previous = latest.get(record.pk)
        if previous is not None and previous.sha256 == parsed.sha256:
            stored.append((previous, True))
            continue
        number = 1 if previous is None else previous.version + 1
        version = _version_row(record=record, number=number, parsed=parsed, cipher=keyrings[record.patient_id])
        latest[record.pk] = version
        new_versions.append(version)
        stored.append((version, False))
    RecordVersion.objects.bulk_create(new_versions)
    if new_versions and new_versions[0].pk is None:  # a database that does not return the inserted ids
        ids = {
            (row.record_id, row.version): row.pk
            for row in RecordVersion.objects.filter(record_id__in=record_ids).only("pk", "record_id", "version")
        }
        for version in new_versions:
            version.pk = ids[(version.record_id, version.version)]
    return stored


def _version_row(*, record: Record, number: int, parsed: ParsedRecord, cipher: RecordCipher) -> RecordVersion:
    """Version `number` of `record` holding `parsed`, sealed, not saved: every version row is built here."""
    key_id, ciphertext, encoding = record_seal(cipher, canonical=parsed.canonical, record_id=record.pk, version=number)
    features = features_seal(
        cipher,
        features=bundle_features(parsed.canonical) or {},
        record_sha256=parsed.sha256,
        record_id=record.pk,
        version=number,
        key_id=key_id,
        record_ciphertext=ciphertext,
    )
    return RecordVersion(
        record=record,
        version=number,
        sha256=parsed.sha256,
        key_id=key_id,
        content_encoding=encoding,
        ciphertext=ciphertext,
        features=features.sealed,
        features_sha256=features.digest,
    )


def _patients_of(parsed_records: list[ParsedRecord]) -> list[Patient]:
    """The patient of each record: the one any of its identifiers names (a new one, pseudonymised by the first,
    when none does); each identifier not yet known is added to them."""
    pseudonyms_of = [
        list(dict.fromkeys(patient_pseudonym(key) for key in parsed.patient_keys or (parsed.patient_key,)))
        for parsed in parsed_records
    ]
    every_pseudonym = {pseudonym for pseudonyms in pseudonyms_of for pseudonym in pseudonyms}
    known = {
        identifier.pseudonym: identifier.patient
        for identifier in PatientIdentifier.objects.filter(pseudonym__in=every_pseudonym).select_related("patient")
    }
    first_pseudonyms = []
    for parsed, pseudonyms in zip(parsed_records, pseudonyms_of, strict=True):
        if len({known[p].pk for p in pseudonyms if p in known}) > 1:
            raise BundleRejected(
                "The Patient's identifiers belong to two patients already ingested.",
                code="patient_identifier_conflict",
                detail={"entry": parsed.patient_entry, "path": "resource.identifier"},
            )
        if not any(p in known for p in pseudonyms):
            first_pseudonyms.append(pseudonyms[0])
    if first_pseudonyms:
        Patient.objects.bulk_create(
            [Patient(pseudonym=p) for p in dict.fromkeys(first_pseudonyms)], ignore_conflicts=True
        )
        by_pseudonym = {
            patient.pseudonym: patient for patient in Patient.objects.filter(pseudonym__in=first_pseudonyms)
        }
    else:
        by_pseudonym = {}
    patients = []
    for pseudonyms in pseudonyms_of:
        patient = next((known[p] for p in pseudonyms if p in known), None) or by_pseudonym[pseudonyms[0]]
        known.update(dict.fromkeys(pseudonyms, patient))
        patients.append(patient)
    PatientIdentifier.objects.bulk_create(
        [PatientIdentifier(patient=known[p], pseudonym=p) for p in every_pseudonym], ignore_conflicts=True
    )
    return patients


def _records_of(parsed_records: list[ParsedRecord], patients: list[Patient]) -> list[Record]:
    """The record of each (patient, category), created when it does not exist yet."""
    wanted = [(patient.pk, parsed.category) for parsed, patient in zip(parsed_records, patients, strict=True)]

    def existing() -> dict[tuple[UUID, str], Record]:
        rows = Record.objects.filter(patient_id__in={patient_id for patient_id, _ in wanted})
        return {(record.patient_id, record.category): record for record in rows}

    found = existing()
    missing = [
        Record(patient_id=patient_id, category=category)
        for patient_id, category in dict.fromkeys(wanted)
        if (patient_id, category) not in found
    ]
    if missing:
        Record.objects.bulk_create(missing, ignore_conflicts=True)  # another ingest may have just made one
        found = existing()
    return [found[key] for key in wanted]


def _anchor_records_after_ingest(*, record_ids: set[UUID] | None) -> None:
    """Anchor the pending versions of `record_ids` (every pending version: None), or leave them pending for the
    anchoring task when the ledger does not answer."""
    try:
        if record_ids is None:
            record_versions_anchor_pending()
        else:
            record_versions_anchor_of(record_ids=record_ids)
    except ContractRejected as rejection:
        # Retrying will not help; the versions stay pending (never analysed) and are logged.
        log.error("record_anchor_rejected", code=rejection.code, record_ids=sorted(str(i) for i in record_ids or ()))
    except LedgerError as error:
        log.warning(
            "record_anchor_deferred", error=type(error).__name__, record_ids=sorted(str(i) for i in record_ids or ())
        )
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


# --- the bulk ingest: FHIR NDJSON files, in slices, resumable ----------------------------------------------

MAX_KEPT_REFUSALS = 100


@dataclass(frozen=True)
class BulkIngestResult:
    job: BulkIngestJob
    resumed_at: int
    """The slice this run started from (0 for a new job)."""


def record_ingest_ndjson(
    *,
    paths: list[str],
    actor: Any = None,
    slice_patients: int | None = None,
    after_slice: Callable[[BulkIngestJob], None] | None = None,
) -> BulkIngestResult:
    """Ingest FHIR NDJSON files (Patient and Observation resources, one a line, in any files and order) as the
    bundle ingest would ingest them in one bundle: one record per (patient, category), stored through the same
    _record_versions_store, anchored in one ledger transaction per slice.

    The job is known by its files' hashes: run again on the same files after an interruption, it resumes at the
    first slice not committed (a slice's versions and the job's progress are committed together), and a job
    done is not done again. Every line is checked before anything is stored (records.ndjson, stage 1): a refusal
    there refuses the job (BundleRejected / BundleTooLarge naming the file and line). After that, a patient with
    a line refused is left out whole and counted in the job's refusals; the rest of the slice is stored.
    Versions the ledger did not take stay pending, for records.tasks.anchor_pending_records, as ingest leaves them.
    `after_slice` is called after each slice is committed and anchored (progress reports).
    """
    files = ndjson_files(paths)
    files_sha256 = hashlib.sha256("\n".join(ndjson.sha256 for ndjson in files).encode()).hexdigest()
    job, _created = BulkIngestJob.objects.get_or_create(
        files_sha256=files_sha256,
        defaults={
            "actor": _user_or_none(actor),
            "files": [{"sha256": ndjson.sha256, "bytes": ndjson.size} for ndjson in files],
            "slice_patients": slice_patients or settings.INGEST_NDJSON_SLICE_PATIENTS,
        },
    )
    resumed_at = job.slices_done
    if job.status != "running":
        return BulkIngestResult(job=job, resumed_at=resumed_at)
    log.info("bulk_ingest_started", job_id=str(job.pk), files=len(files), resumed_at=resumed_at)
    try:
        index = ndjson_index(
            files, processes=settings.INGEST_NDJSON_PROCESSES + 1 if settings.INGEST_NDJSON_PROCESSES else 0
        )
    except (BundleRejected, BundleTooLarge) as error:
        BulkIngestJob.objects.filter(pk=job.pk).update(status="refused", refusal_code=error.code)
        log.info("bulk_ingest_refused", job_id=str(job.pk), code=error.code)
        raise
    except IngestInterrupted as error:
        _log_interrupted(job, error)
        raise
    slices_total = -(-index.patient_count // job.slice_patients)
    BulkIngestJob.objects.filter(pk=job.pk).update(slices_total=slices_total)
    if resumed_at:
        # A run stopped between a slice's commit and its anchoring left its versions pending: anchored now.
        _anchor_records_after_ingest(record_ids=None)
    numbers = range(resumed_at, slices_total)
    slices = [
        range(number * job.slice_patients, min((number + 1) * job.slice_patients, index.patient_count))
        for number in numbers
    ]
    read = ndjson_slices_records(files, index, slices, processes=settings.INGEST_NDJSON_PROCESSES)
    try:
        for number, (parsed_records, refused) in zip(numbers, read, strict=True):
            job = _bulk_slice_store(job=job, number=number, parsed_records=parsed_records, refused=refused, index=index)
            if after_slice is not None:
                after_slice(job)
    except IngestInterrupted as error:
        _log_interrupted(job, error)
        raise
    BulkIngestJob.objects.filter(pk=job.pk).update(status="done")
    job.refresh_from_db()
    log.info("bulk_ingest_done", job_id=str(job.pk), records_new=job.records_new, refused=job.patients_refused)
    return BulkIngestResult(job=job, resumed_at=resumed_at)


def _log_interrupted(job: BulkIngestJob, error: IngestInterrupted) -> None:
    """The job stays running, resumable: the operator's log names it, the slices it kept and the cause's type."""
    log.warning("bulk_ingest_interrupted", job_id=str(job.pk), slices_done=job.slices_done, cause=error.detail["error"])


def _bulk_slice_store(
    *,
    job: BulkIngestJob,
    number: int,
    parsed_records: list[ParsedRecord],
    refused: dict[int, PatientRefusal],
    index: ExportIndex,
) -> BulkIngestJob:
    """Store slice `number` and mark it done in one transaction, then anchor its new versions."""
    refused = dict(refused)
    with transaction.atomic():
        job = BulkIngestJob.objects.select_for_update().get(pk=job.pk)
        if job.slices_done != number:  # another run of the same job got here first
            return job
        while True:
            kept = [parsed for parsed in parsed_records if parsed.patient_entry not in refused]
            try:
                with transaction.atomic():
                    stored = _record_versions_store(parsed_records=kept)
                break
            except BundleRejected as conflict:  # patient_identifier_conflict, patient_erased: that patient is refused
                at = index.patient_at(conflict.detail["entry"])
                refused[conflict.detail["entry"]] = PatientRefusal(
                    code=conflict.code, position=at.position, line=at.line, path="resource.identifier"
                )
        job.slices_done = number + 1
        job.records_new += sum(not unchanged for _version, unchanged in stored)
        job.records_unchanged += sum(unchanged for _version, unchanged in stored)
        job.patients_refused += len(refused)
        job.refusals = (job.refusals + [refusal.as_dict() for _, refusal in sorted(refused.items())])[
            :MAX_KEPT_REFUSALS
        ]
        job.save()
        to_anchor = {version.record_id for version, unchanged in stored if not unchanged}
    if to_anchor:
        _anchor_records_after_ingest(record_ids=to_anchor)
    log.info("bulk_ingest_slice", job_id=str(job.pk), slice=number, records=len(stored), refused=len(refused))
    return job


# --- moving versions written under the master keys to their patients' data keys ---------------------------------


@dataclass(frozen=True)
class ResealProgress:
    """How far `record_versions_reseal_per_patient` got: versions moved so far, versions left under master keys,
    and those that did not open (left as they are, counted, never logged by content)."""

    batches: int
    moved: int
    remaining: int
    unopenable: int


def record_versions_reseal_per_patient(
    *, batch_patients: int, after_batch: Callable[[ResealProgress], None] | None = None
) -> ResealProgress:
    """Reseal every version still under a master key id under its patient's data key, `batch_patients` patients
    per database transaction, and rewrap data keys wrapped under a master key that is no longer the active one.

    The canonical content and its hash do not change (nor the features' salted digest: their plaintext is moved as
    it is, records.features.features_reseal), so every anchor still holds. A batch's versions and its patients'
    new data keys are committed together: a process killed at any point leaves every version under either key,
    each opening, and a run started again continues with the versions still under master keys. A version that
    does not open is left as it is and counted (`unopenable`); the integrity check reports it as before.
    """
    opening = record_keys()
    legacy = RecordVersion.objects.exclude(key_id__startswith=DATA_KEY_PREFIX).exclude(key_id=ERASED_KEY_ID)
    unopenable: list[int] = []
    batches = moved = 0
    while True:
        with transaction.atomic():
            pending = legacy.exclude(pk__in=unopenable)
            patient_ids = list(
                pending.order_by("record__patient_id").values_list("record__patient_id", flat=True).distinct()
            )[:batch_patients]
            if not patient_ids:
                break
            keyrings = patient_keyrings(patients=Patient.objects.filter(pk__in=patient_ids))
            versions = list(pending.filter(record__patient_id__in=patient_ids).select_related("record"))
            resealed = []
            for version in versions:
                try:
                    resealed.append(_version_resealed(version, opening, keyrings[version.record.patient_id]))
                except CiphertextInvalid:
                    unopenable.append(version.pk)
            RecordVersion.objects.bulk_update(resealed, ["key_id", "content_encoding", "ciphertext", "features"])
        batches += 1
        moved += len(resealed)
        progress = ResealProgress(batches, moved, pending.count(), len(unopenable))
        log.info("record_versions_resealed", batch=batches, moved=len(resealed), remaining=progress.remaining)
        if after_batch is not None:
            after_batch(progress)
    while patient_data_keys_rewrap(limit=1000):
        pass
    return ResealProgress(batches, moved, legacy.exclude(pk__in=unopenable).count(), len(unopenable))


def _version_resealed(version: RecordVersion, opening: RecordCipher, sealing: RecordCipher) -> RecordVersion:
    """`version` with its content and features moved under `sealing` (not saved)."""
    old_ciphertext = bytes(version.ciphertext)
    canonical = record_open(
        opening,
        ciphertext=old_ciphertext,
        record_id=version.record_id,
        version=version.version,
        key_id=version.key_id,
        encoding=version.content_encoding,
    )
    key_id, ciphertext, encoding = record_seal(
        sealing, canonical=canonical, record_id=version.record_id, version=version.version
    )
    if version.features:
        version.features = features_reseal(
            opening,
            sealing,
            sealed=bytes(version.features),
            record_id=version.record_id,
            version=version.version,
            key_id=version.key_id,
            record_ciphertext=old_ciphertext,
            new_record_ciphertext=ciphertext,
        )
    version.key_id, version.ciphertext, version.content_encoding = key_id, ciphertext, encoding
    return version
