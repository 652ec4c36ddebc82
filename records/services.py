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
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from health_platform import bootstrap
from ledger import ContractRejected, LedgerError
from ledger.contracts import AnchorRequest, AnchorsCommitted, Contracts, RecordAnchor
from records.bundles import ParsedRecord, bundle_parse
from records.crypto import RecordCipher, patient_pseudonym, record_cipher, record_seal
from records.models import AnchorState, Patient, Record, RecordVersion
from records.selectors import record_versions_anchorable

log = structlog.get_logger(__name__)

ANCHOR_BATCH_LIMIT = 1000


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


@dataclass(frozen=True)
class AnchorRunResult:
    anchored: int
    """Versions marked anchored by this run (newly anchored or reconciled with the ledger)."""
    unresolved: int
    """Versions the ledger holds with another hash or out of sequence: left pending, logged."""
    remaining: bool
    """More pending versions may be waiting (the run stopped at its limit)."""


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
        _anchor_pending(record_ids=record_ids, limit=ANCHOR_BATCH_LIMIT + len(record_ids))
    except ContractRejected as rejection:
        # Retrying will not help; the versions stay pending (never analysed) and are logged.
        log.error("record_anchor_rejected", code=rejection.code, record_ids=sorted(str(i) for i in record_ids))
    except LedgerError as error:
        log.warning("record_anchor_deferred", error=type(error).__name__, record_ids=sorted(str(i) for i in record_ids))
        transaction.on_commit(_schedule_anchoring, robust=True)


def _schedule_anchoring() -> None:
    from records.tasks import anchor_pending_records

    anchor_pending_records.apply_async(countdown=settings.ANCHOR_RETRY_COUNTDOWN_SECONDS)


def record_versions_anchor_pending(*, limit: int = ANCHOR_BATCH_LIMIT) -> AnchorRunResult:
    """Anchor up to `limit` pending versions, in as few ledger transactions as their order allows.

    Idempotent: a version the ledger already holds with the same hash (an earlier attempt that
    committed but was not recorded here) is reconciled, not anchored twice. Raises LedgerError
    subclasses when the ledger does not answer (the task retries on those).
    """
    run = _anchor_pending(record_ids=None, limit=limit)
    log.info("record_anchor_run", anchored=run.anchored, unresolved=run.unresolved, remaining=run.remaining)
    return run


def _anchor_pending(*, record_ids: set[UUID] | None, limit: int) -> AnchorRunResult:
    anchored = 0
    unresolved: set[int] = set()
    attempted = 0
    while attempted < limit:
        batch = record_versions_anchorable(record_ids=record_ids, exclude_ids=unresolved, limit=limit - attempted)
        if not batch:
            return AnchorRunResult(anchored=anchored, unresolved=len(unresolved), remaining=False)
        attempted += len(batch)
        done, left = _anchor_batch(batch)
        anchored += done
        unresolved.update(left)
    more = bool(record_versions_anchorable(record_ids=record_ids, exclude_ids=unresolved, limit=1))
    return AnchorRunResult(anchored=anchored, unresolved=len(unresolved), remaining=more)


def _anchor_batch(versions: list[RecordVersion]) -> tuple[int, set[int]]:
    """Anchor `versions` (at most one per record) in one ledger transaction.

    Returns (versions marked anchored, ids of versions left pending as unresolved). On a
    rejection, each version is compared with what the ledger holds and the rest resubmitted once.
    """
    RecordVersion.objects.filter(pk__in=[version.pk for version in versions]).update(
        anchor_attempts=F("anchor_attempts") + 1
    )
    contracts = bootstrap.contracts()
    try:
        committed = contracts.anchor_records(_anchor_requests(versions))
    except ContractRejected as rejection:
        log.warning("record_anchor_batch_rejected", code=rejection.code, versions=len(versions))
        reconciled, resubmit, unresolved = _reconcile(contracts=contracts, versions=versions)
        if not resubmit:
            return reconciled, unresolved
        committed = contracts.anchor_records(_anchor_requests(resubmit))
        return reconciled + _mark_anchored(committed=committed, versions=resubmit), unresolved
    return _mark_anchored(committed=committed, versions=versions), set()


def _anchor_requests(versions: list[RecordVersion]) -> list[AnchorRequest]:
    return [
        AnchorRequest(str(version.record_id), version.record.patient.pseudonym, version.sha256, version.version)
        for version in versions
    ]


def _mark_anchored(*, committed: AnchorsCommitted, versions: list[RecordVersion]) -> int:
    by_record = {anchor.record_id: anchor for anchor in committed.anchors}
    marked = 0
    for version in versions:
        anchor = by_record.get(str(version.record_id))
        if anchor is None or anchor.sha256 != version.sha256 or anchor.version != version.version:
            log.error(
                "record_anchor_receipt_mismatch",
                record_id=str(version.record_id),
                version=version.version,
                tx_id=committed.tx_id,
            )
            continue
        marked += _mark_version_anchored(version=version, anchor=anchor, block=committed.block_of(anchor))
    log.info("record_versions_anchored", tx_id=committed.tx_id, block_number=committed.block_number, count=marked)
    return marked


def _mark_version_anchored(*, version: RecordVersion, anchor: RecordAnchor, block: int | None) -> int:
    anchored_at = parse_datetime(anchor.anchored_at or "") or timezone.now()
    return RecordVersion.objects.filter(pk=version.pk, anchor_state=AnchorState.PENDING).update(
        anchor_state=AnchorState.ANCHORED, anchor_tx_id=anchor.tx_id, anchor_block=block, anchored_at=anchored_at
    )


def _reconcile(*, contracts: Contracts, versions: list[RecordVersion]) -> tuple[int, list[RecordVersion], set[int]]:
    """Compare each version with the ledger: (marked anchored, to resubmit, unresolved ids)."""
    reconciled, resubmit, unresolved = 0, [], set()
    for version in versions:
        found = contracts.anchor_at_version(str(version.record_id), version.version)
        if found.anchor is not None:
            same = (
                found.anchor.sha256 == version.sha256
                and found.anchor.patient_pseudonym == version.record.patient.pseudonym
            )
            if same:
                reconciled += _mark_version_anchored(version=version, anchor=found.anchor, block=None)
                continue
            log.error("record_anchor_conflict", record_id=str(version.record_id), version=version.version)
        elif found.latest_version == version.version - 1:
            resubmit.append(version)
            continue
        else:
            log.error(
                "record_anchor_out_of_sequence",
                record_id=str(version.record_id),
                version=version.version,
                ledger_version=found.latest_version,
            )
        unresolved.add(version.pk)
    if reconciled:
        log.info("record_versions_reconciled", count=reconciled)
    return reconciled, resubmit, unresolved


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
