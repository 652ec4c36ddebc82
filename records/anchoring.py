"""Anchoring record versions on the ledger: each version's SHA-256, in as few transactions as allowed.

Ingest anchors what it stored at once (records.services); whatever the ledger did not take then stays
"pending" (never analysed) and the anchoring task (records.tasks) anchors it later.
"""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from health_platform import bootstrap
from ledger import ContractRejected
from ledger.contracts import AnchorRequest, AnchorsCommitted, Contracts, RecordAnchor
from records.models import AnchorState, RecordVersion
from records.selectors import record_versions_anchorable

log = structlog.get_logger(__name__)

ANCHOR_BATCH_LIMIT = 1000


@dataclass(frozen=True)
class AnchorRunResult:
    anchored: int
    """Versions marked anchored by this run (newly anchored or reconciled with the ledger)."""
    unresolved: int
    """Versions the ledger holds with another hash or out of sequence: left pending, logged."""
    remaining: bool
    """More pending versions may be waiting (the run stopped at its limit)."""


def record_versions_anchor_of(*, record_ids: set[UUID]) -> AnchorRunResult:
    """Anchor the pending versions of `record_ids` (just ingested). Raises LedgerError subclasses when the
    ledger does not answer or refuses the batch."""
    return _anchor_pending(record_ids=record_ids, limit=ANCHOR_BATCH_LIMIT + len(record_ids))


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
        asked = limit - attempted
        batch = record_versions_anchorable(record_ids=record_ids, exclude_ids=unresolved, limit=asked)
        if not batch:
            return AnchorRunResult(anchored=anchored, unresolved=len(unresolved), remaining=False)
        attempted += len(batch)
        done, left = _anchor_batch(batch)
        anchored += done
        unresolved.update(left)
        if len(batch) < asked and not any(getattr(version, "later_pending", True) for version in batch):
            # Every version anchorable was in the batch, and none had a later one waiting for it: none is left.
            return AnchorRunResult(anchored=anchored, unresolved=len(unresolved), remaining=False)
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
        AnchorRequest(
            str(version.record_id),
            version.record.patient.pseudonym,
            version.sha256,
            version.version,
            version.features_sha256,
        )
        for version in versions
    ]


def _mark_anchored(*, committed: AnchorsCommitted, versions: list[RecordVersion]) -> int:
    by_record = {anchor.record_id: anchor for anchor in committed.anchors}
    receipts: list[tuple[RecordVersion, RecordAnchor, int | None]] = []
    for version in versions:
        anchor = by_record.get(str(version.record_id))
        if anchor is None or (anchor.sha256, anchor.version, anchor.features_sha256) != (
            version.sha256,
            version.version,
            version.features_sha256,
        ):
            log.error(
                "record_anchor_receipt_mismatch",
                record_id=str(version.record_id),
                version=version.version,
                tx_id=committed.tx_id,
            )
            continue
        receipts.append((version, anchor, committed.block_of(anchor)))
    marked = _mark_versions_anchored(receipts)
    log.info("record_versions_anchored", tx_id=committed.tx_id, block_number=committed.block_number, count=marked)
    return marked


def _mark_versions_anchored(receipts: list[tuple[RecordVersion, RecordAnchor, int | None]]) -> int:
    """Mark each version anchored by its receipt (anchor and block), if still pending: one UPDATE per distinct
    (transaction, block, time), which is one for a batch the ledger took in one transaction."""
    by_receipt: dict[tuple[str, int | None, datetime], list[int]] = {}
    for version, anchor, block in receipts:
        anchored_at = parse_datetime(anchor.anchored_at or "") or timezone.now()
        by_receipt.setdefault((anchor.tx_id, block, anchored_at), []).append(version.pk)
    return sum(
        RecordVersion.objects.filter(pk__in=ids, anchor_state=AnchorState.PENDING).update(
            anchor_state=AnchorState.ANCHORED, anchor_tx_id=tx_id, anchor_block=block, anchored_at=anchored_at
        )
        for (tx_id, block, anchored_at), ids in by_receipt.items()
    )


def _reconcile(*, contracts: Contracts, versions: list[RecordVersion]) -> tuple[int, list[RecordVersion], set[int]]:
    """Compare each version with the ledger: (marked anchored, to resubmit, unresolved ids)."""
    reconciled, resubmit, unresolved = 0, [], set()
    for version in versions:
        found = contracts.anchor_at_version(str(version.record_id), version.version)
        if found.anchor is not None:
            same = (
                found.anchor.sha256 == version.sha256
                and found.anchor.features_sha256 == version.features_sha256
                and found.anchor.patient_pseudonym == version.record.patient.pseudonym
            )
            if same:
                reconciled += _mark_versions_anchored([(version, found.anchor, None)])
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
