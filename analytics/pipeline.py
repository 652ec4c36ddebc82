"""The analysis pipeline: each step of a batch, from planning to the collected scores.

Per batch (custodian side, analytics.tasks):
    gate     ONE CheckAccessBatch on the ledger, at the moment the batch runs   pending  -> gated
    log      ONE AppendAccessEvents transaction: every record, admitted or not  gated    -> logged
    encrypt  admitted records' features, clipped, column-packed, with the        logged   -> encrypted
             requester's PUBLIC context; ciphertexts go to the blob store
then the compute worker scores the ciphertexts (analytics.compute) and the custodian collects the
result keys (encrypted -> scored); or, with ANALYTICS_SCORE_ON=custodian (one machine, the embedded default),
the custodian scores them in memory as it encrypts them, writes one score ciphertext per chunk, and collects
at once. Every transition is a conditional UPDATE from the state before,
so a task delivered twice or resumed after a crash continues from the stored state and does no step
twice. Fail closed: without a positive answer from the ledger nothing is encrypted or scored.
The stalled-work sweep (analyses_stalled) finds work whose message was lost.
"""

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from analytics import engines
from analytics.diagnostic_models import LinearModel
from analytics.models import FINISHED, AnalysisBatch, AnalysisRequest, AnalysisStatus, BatchStatus, CohortKind
from analytics.registry import model_spec
from audit.services import access_batch_log, access_batch_mirror
from chaincode.validation import format_timestamp
from consent.selectors import patients_with_active_consent
from health_platform import bootstrap
from health_platform.selectors import one_of
from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import AccessItem
from records.selectors import (
    NO_CONTENT_HASH,
    content_features,
    content_sha256,
    record_versions_contents,
    record_versions_features,
    record_versions_usable_for_analysis,
)

log = structlog.get_logger(__name__)


class LedgerNotAnswering(Exception):
    """The ledger did not answer a pipeline step; the task retries it, then fails the request closed."""


def analysis_start(*, request_id: str) -> list[int]:
    """Plan the batches (once) and return the ids of those not scored yet, for the gate tasks."""
    with transaction.atomic():
        request = AnalysisRequest.objects.select_for_update().select_related("model").filter(pk=request_id).first()
        if request is None or request.status in FINISHED:
            return []
        if request.status == AnalysisStatus.QUEUED:
            _plan_batches(request)
    return list(
        AnalysisBatch.objects.filter(request_id=request.pk)
        .exclude(status__in=[BatchStatus.SCORED, BatchStatus.FAILED, BatchStatus.CANCELLED])
        .values_list("pk", flat=True)
    )


def _plan_batches(request: AnalysisRequest) -> None:
    spec = model_spec(request.model)
    versions = record_versions_usable_for_analysis(categories=[spec.category])
    if request.cohort_kind == CohortKind.EXPLICIT:
        versions = versions.filter(record__patient__pseudonym__in=one_of(request.cohort_pseudonyms))
    else:
        # Candidates from the consent mirror; the ledger gate decides. A stale mirror can only
        # add candidates that the gate then refuses, or miss some that a later request includes.
        grantees = [g for g in (request.grantee_id, request.organisation_grantee_id) if g]
        candidates = patients_with_active_consent(grantees=grantees, purpose=request.purpose)
        versions = versions.filter(record__patient_id__in=candidates)
    rows = list(versions.values_list("pk", "record__patient__pseudonym"))
    ids = [pk for pk, _ in rows]
    if request.cohort_kind == CohortKind.EXPLICIT:
        request.unknown_patients = len(set(request.cohort_pseudonyms) - {pseudonym for _, pseudonym in rows})
    AnalysisBatch.objects.bulk_create(
        AnalysisBatch(request=request, index=index, record_version_ids=chunk)
        for index, chunk in enumerate(even_batches(ids, request.batch_size))
    )
    request.total_records = len(ids)
    request.status = AnalysisStatus.COMPLETED if not ids else AnalysisStatus.RUNNING
    request.started_at = timezone.now()
    if not ids:
        request.finished_at = request.started_at
    request.save(update_fields=["total_records", "unknown_patients", "status", "started_at", "finished_at"])
    log.info(
        "analysis_planned",
        request_id=str(request.id),
        records=len(ids),
        batches=(len(ids) + request.batch_size - 1) // request.batch_size,
    )


def even_batches(ids: list[int], batch_size: int) -> list[list[int]]:
    """As few batches as `batch_size` allows, of equal size (±1): batches run in parallel on the custodian
    workers, and a short last batch would leave a worker idle while the others finish."""
    count = -(-len(ids) // batch_size)  # ceiling
    if count == 0:
        return []
    size, extra = divmod(len(ids), count)
    batches, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        batches.append(ids[start:end])
        start = end
    return batches


@dataclass(frozen=True)
class ComputeOrder:
    """What the compute worker needs: blob keys and plaintext weights; no record, no key. When the custodian
    scored the batch itself (ANALYTICS_SCORE_ON=custodian), `score_keys` are its results and nothing is sent."""

    batch_id: int
    compute_context_key: str
    column_keys: list[list[str]]
    weights: list[float]
    bias: float
    score_keys: list[str] | None = None


def analysis_batch_advance(*, batch_id: int, claimant: str | None = None, force: bool = False) -> ComputeOrder | None:
    """Run the custodian steps the batch still needs; return the compute order once encrypted.

    Raises LedgerNotAnswering when the ledger does not answer the gate or the log (the task retries).
    `claimant` is the calling task's message id (see _log; a new one when not given); `force` (the
    stalled-work sweep) takes over a log step claimed by a task that never finished it.
    """
    batch = AnalysisBatch.objects.select_related("request__model").filter(pk=batch_id).first()
    if batch is None or batch.request.status in (AnalysisStatus.FAILED, AnalysisStatus.CANCELLED):
        return None
    spec = model_spec(batch.request.model)
    readings: dict[int, _Reading] | None = None  # versions opened once when gate and encrypt run together
    if batch.status == BatchStatus.PENDING:
        batch, readings = _gate(batch, spec)
    if batch.status == BatchStatus.GATED:
        batch = _log(batch, spec, claimant=claimant or uuid.uuid4().hex, force=force)
    if batch.status == BatchStatus.LOGGED:
        batch = _encrypt(batch, spec, readings)
    if batch.status == BatchStatus.ENCRYPTED:
        scored = all("score" in c for c in batch.column_keys) and (
            bool(batch.column_keys) or settings.ANALYTICS_SCORE_ON == "custodian"
        )
        return ComputeOrder(
            batch.pk,
            batch.request.compute_context_key,
            [c["columns"] for c in batch.column_keys],
            list(spec.weights),
            spec.bias,
            [c["score"] for c in batch.column_keys] if scored else None,
        )
    return None


def _transition(batch: AnalysisBatch, expected: str, **fields: Any) -> AnalysisBatch:
    """Move the batch on if it is still in `expected`; either way, return it as stored now.

    When this call moved it, the stored row is `batch` (read in `expected`) plus `fields`, so it is not
    read back: that would decode the batch's thousands of decisions again. When another delivery moved
    it first, the row is read back, and this run continues from what that one stored.
    """
    now = timezone.now()
    if AnalysisBatch.objects.filter(pk=batch.pk, status=expected).update(**fields, updated_at=now):
        for name, value in {**fields, "updated_at": now}.items():
            setattr(batch, name, value)
        return batch
    return AnalysisBatch.objects.select_related("request__model").get(pk=batch.pk)


def compute_order_claim(*, batch_id: int, claimant: str, force: bool = False) -> bool:
    """Claim the sending of an encrypted batch's compute order for `claimant` (the gate task's message id), so
    that two gate messages for one batch send it once. The claimant's own message delivered again claims it
    again: the delivery that claimed it stopped before it was acknowledged (a worker killed between the claim
    and the send), so whether its order left is unknown, and it is sent again (the collect keeps one result).
    `force` (the stalled-work sweep, when the order or its result was lost) claims it whoever holds it."""
    rows = AnalysisBatch.objects.filter(pk=batch_id, status=BatchStatus.ENCRYPTED)
    if not force:
        rows = rows.filter(Q(compute_sent_at__isnull=True) | Q(compute_claimed_by=claimant))
    now = timezone.now()
    return bool(rows.update(compute_sent_at=now, compute_claimed_by=claimant, updated_at=now))


def compute_order_release(*, batch_id: int) -> None:
    """The order could not be sent: let the next delivery (or the sweep) claim it."""
    AnalysisBatch.objects.filter(pk=batch_id, status=BatchStatus.ENCRYPTED).update(compute_sent_at=None)


@dataclass(frozen=True)
class _Reading:
    """What the custodian keeps of one opened version: its hash and the model's features, not its bytes."""

    version_id: int
    record_id: str
    category: str
    patient_pseudonym: str
    sha256: str  # NO_CONTENT_HASH when the ciphertext (or the features kept from it) does not open
    features: list[float] | None  # None when it did not open or lacks one of the model's features
    features_sha256: str = ""  # the features kept at ingest: their salted hash, which the ledger checks too

    @property
    def opened(self) -> bool:
        return self.sha256 != NO_CONTENT_HASH


def _read_versions(version_ids: list[int], spec: LinearModel) -> dict[int, _Reading]:
    """Read each version's features: those kept at ingest, with the record's anchored hash sealed beside them
    and their own salted hash (records.features), both of which the gate sends to the ledger; or, for a version
    ingested before features were kept, its content opened once: its canonical bytes hashed and the features
    read, then the bytes let go (a batch's plaintexts are never all held at once). Nothing is encrypted or sent
    here: what is admitted is decided by the ledger, afterwards."""
    readings = {}
    kept, without = record_versions_features(version_ids=version_ids)
    for version in kept:
        opened = version.opened
        readings[version.version_id] = _reading(
            version,
            sha256=opened.record_sha256 if opened is not None else NO_CONTENT_HASH,
            features=version.vector(spec.feature_codes),
            features_sha256=opened.digest if opened is not None else "",
        )
    for content in record_versions_contents(version_ids=without) if without else ():
        plaintext = content.plaintext
        readings[content.version_id] = _reading(
            content,
            sha256=content_sha256(plaintext) if plaintext is not None else NO_CONTENT_HASH,
            features=content_features(plaintext, spec.feature_codes) if plaintext is not None else None,
        )
    return readings


def _reading(version: Any, *, sha256: str, features: list[float] | None, features_sha256: str = "") -> _Reading:
    """A _Reading of `version` (a VersionFeatures or a VersionContent: its ids, category and patient)."""
    return _Reading(
        version.version_id,
        str(version.record_id),
        version.category,
        version.patient_pseudonym,
        sha256,
        features,
        features_sha256,
    )


def gate_clock() -> datetime:
    """The moment the gate asks the ledger about: now. The gate's only clock, so that a test moves the gate's
    time (by replacing this function) instead of waiting for a consent to expire."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class GatedRecords:
    """What the gate answered for some record versions: the moment asked about, each version read (its hash and
    features), and one decision per version read, admitted or refused with the reason and the consent."""

    at: datetime
    readings: dict[int, "_Reading"]
    decisions: list[dict[str, Any]]
    refusals: dict[str, int]

    @property
    def admitted_count(self) -> int:
        return len(self.decisions) - sum(self.refusals.values())

    @property
    def counts(self) -> dict[str, Any]:
        """What a log line says of the answer: how many admitted, how many refused for each reason."""
        return {"admitted": self.admitted_count, "refused": self.refusals}


def records_gate(
    *, version_ids: list[int], spec: LinearModel, grantee: str, organisation: str | None, purpose: str
) -> GatedRecords:
    """Read the versions and ask the ledger, in ONE CheckAccessBatch at this moment, whether each may be used by
    `grantee` (or its `organisation`) for `purpose`, its recomputed hash and features hash checked against the
    anchors. The one gate of the platform: an analysis batch and a training round's organisation both go through it.
    Raises LedgerNotAnswering when the ledger does not answer (fail closed: nothing is admitted)."""
    readings = _read_versions(version_ids, spec)
    gated = [readings[i] for i in version_ids if i in readings]
    at = gate_clock()
    try:
        answers = bootstrap.contracts().check_access_batch(
            grantee=grantee,
            organisation=organisation,
            purpose=purpose,
            at=format_timestamp(at),
            items=[AccessItem(r.record_id, r.category, r.sha256, r.features_sha256) for r in gated],
        )
    except LedgerUnavailable as error:
        raise LedgerNotAnswering("gate") from error
    decisions = [
        {
            "version_id": reading.version_id,
            "record_id": reading.record_id,
            "category": reading.category,
            "sha256": reading.sha256,
            **({"features_sha256": reading.features_sha256} if reading.features_sha256 else {}),
            "patient_pseudonym": reading.patient_pseudonym,
            "decision": answer.decision,
            "reason": answer.reason,
            "consent_id": answer.consent_id,
        }
        for reading, answer in zip(gated, answers, strict=True)
    ]
    refusals: Counter[str] = Counter(str(d["reason"]) for d in decisions if d["decision"] != "admit")
    return GatedRecords(at, readings, decisions, dict(refusals))


def _gate(batch: AnalysisBatch, spec: LinearModel) -> tuple[AnalysisBatch, dict[int, _Reading]]:
    request = batch.request
    gated = records_gate(
        version_ids=batch.record_version_ids,
        spec=spec,
        grantee=request.grantee_id,
        organisation=request.organisation_grantee_id or None,
        purpose=request.purpose,
    )
    log.info("analysis_batch_gated", request_id=str(request.id), batch=batch.index, **gated.counts)
    decided = {"decisions": gated.decisions, "admitted_count": gated.admitted_count, "refusals": gated.refusals}
    moved = _transition(batch, BatchStatus.PENDING, status=BatchStatus.GATED, gate_at=gated.at, **decided)
    return moved, gated.readings


def _log(batch: AnalysisBatch, spec: LinearModel, *, claimant: str, force: bool = False) -> AnalysisBatch:
    """Log the batch's decisions on the ledger, ONE transaction, by one task only.

    Two deliveries of gate tasks for one batch can reach this step at the same moment (a duplicate,
    picked up at once): both would submit the batch and one would end on the ledger as an
    MVCC_READ_CONFLICT. So the step is claimed first by `claimant`, the task's message id (log_claim):
    another task stops here with the batch still GATED, while the same message delivered again (its
    process was killed) takes the step over at once. A claim is released when the ledger does not
    answer, for the retry; `force` is the stalled-work sweep's.
    """
    request = batch.request
    request_id = str(request.id)
    events = record_access_events(
        batch.decisions,
        grantee=request.grantee_id,
        purpose=request.purpose,
        request_id=request_id,
        model_hash=spec.sha256,
    )
    if not events:
        return _transition(batch, BatchStatus.GATED, status=BatchStatus.LOGGED)
    if not log_claim(batch_id=batch.pk, claimant=claimant, force=force):
        log.info("analysis_batch_log_held_elsewhere", request_id=request_id, batch=batch.index)
        return batch
    try:
        # Mirrored once the batch is done (analysis_access_mirror): off the critical path of the batches running.
        logged = access_batch_log(batch_id=access_batch_id(request.id, batch.index), events=events, mirror=False)
    except BaseException as error:  # whatever stopped it, the next delivery may take the step
        _log_release(batch.pk, claimant)
        if isinstance(error, LedgerUnavailable):
            raise LedgerNotAnswering("log") from error
        raise
    return _transition(
        batch,
        BatchStatus.GATED,
        status=BatchStatus.LOGGED,
        access_log_tx_id=logged.tx_id,
        access_log_block=logged.block_number,
        access_mirror_pending=True,
    )


def record_access_events(
    decisions: list[dict[str, Any]],
    *,
    grantee: str,
    purpose: str,
    request_id: str,
    model_hash: str | None,
    event_scope: str | None = None,
) -> list[dict[str, Any]]:
    """The access-log events of gated decisions (records_gate), one per record, admitted or refused with the
    reason: what ONE AppendAccessEvents transaction writes. Event ids are deterministic per (`event_scope`, record):
    the scope is the request, or what within it gates the same record again (a training run's round)."""
    scope = request_id if event_scope is None else event_scope
    return [
        {
            "event_id": access_event_id(scope, d["record_id"]),
            "kind": "record_access",
            "record_id": d["record_id"],
            "patient_pseudonym": d["patient_pseudonym"],
            "grantee": grantee,
            "purpose": purpose,
            "request_id": request_id,
            "consent_id": d.get("consent_id"),
            "model_hash": model_hash,
            "category": d["category"],
            "decision": d["decision"],
            "reason": d["reason"],
        }
        for d in decisions
    ]


def log_claim(*, batch_id: int, claimant: str, force: bool = False) -> bool:
    """Claim a gated batch's access-log step for `claimant`: True if it is free or already its own
    (or `force`), False while another task holds it."""
    rows = AnalysisBatch.objects.filter(pk=batch_id, status=BatchStatus.GATED)
    if not force:
        rows = rows.filter(log_claimed_by__in=["", claimant])
    return bool(rows.update(log_claimed_by=claimant, updated_at=timezone.now()))


def _log_release(batch_id: int, claimant: str) -> None:
    AnalysisBatch.objects.filter(pk=batch_id, status=BatchStatus.GATED, log_claimed_by=claimant).update(
        log_claimed_by=""
    )


def access_batch_id(request_id: object, batch_index: int) -> str:
    """Deterministic per (request, batch): a batch logged twice is one ledger entry."""
    return f"{request_id}:{batch_index}"


def access_event_id(request_id: object, record_id: str) -> str:
    """Deterministic per (request, record): a batch logged twice appends nothing the second time."""
    return f"acc:{request_id}:{record_id}"


def _encrypt(batch: AnalysisBatch, spec: LinearModel, readings: dict[int, _Reading] | None) -> AnalysisBatch:
    """Encrypt the features of what the gate admitted, if the content is still exactly what was gated.

    `readings` are the gate's own, from this same run; a resumed batch opens its admitted versions
    again. Either way a version is encrypted only if its hash is the one the gate was asked about.
    """
    request = batch.request
    admitted = [d for d in batch.decisions if d["decision"] == "admit"]
    if readings is None:
        readings = _read_versions([d["version_id"] for d in admitted], spec)
    rows: list[str] = []
    features: list[list[float]] = []
    skipped_records: dict[str, str] = {}  # record id -> why it is not encrypted (NOT_COMPUTED_REASONS)
    for decision in admitted:
        reading = readings.get(decision["version_id"])
        if reading is None or not reading.opened:
            skipped_records[decision["record_id"]] = "content_unavailable"
        elif (reading.sha256, reading.features_sha256) != (decision["sha256"], decision.get("features_sha256", "")):
            skipped_records[decision["record_id"]] = "changed_after_gate"
        elif reading.features is None:
            skipped_records[decision["record_id"]] = "missing_features"
        else:
            rows.append(decision["record_id"])
            features.append(reading.features)
    skipped = Counter(skipped_records.values())
    engine, blobs = engines.homomorphic_engine(), engines.blob_store()
    public = blobs.get(request.public_context_key)
    chunks: list[dict[str, Any]] = []
    clipped: list[str] = []  # the record ids, never the values: every result row of theirs is marked
    if rows:
        matrix, outside = spec.clip(np.asarray(features, dtype=float))
        clipped = [record_id for record_id, out in zip(rows, outside, strict=True) if out]
        for start in range(0, len(rows), engine.slots):
            chunk, ids = matrix[start : start + engine.slots], rows[start : start + engine.slots]
            if settings.ANALYTICS_SCORE_ON == "custodian":  # scored here, in memory: one ciphertext written
                score = engine.encrypt_and_score(public, chunk, spec.weights, spec.bias)
                chunks.append({"record_ids": ids, "columns": [], "score": blobs.put(score)})
            else:
                columns = engine.encrypt_columns(public, chunk)
                chunks.append({"record_ids": ids, "columns": [blobs.put(c) for c in columns]})
    if skipped:
        log.warning(
            "analysis_batch_records_skipped", request_id=str(request.id), batch=batch.index, skipped=dict(skipped)
        )
    refusals = {**batch.refusals, **{k: batch.refusals.get(k, 0) + v for k, v in skipped.items()}}
    return _transition(
        batch,
        BatchStatus.LOGGED,
        status=BatchStatus.ENCRYPTED,
        column_keys=chunks,
        clipped_count=len(clipped),
        clipped_record_ids=clipped,
        refusals=refusals,
        skipped=skipped_records,
        admitted_count=len(rows),
    )


def analysis_batch_collect(*, batch_id: int, score_keys: list[str]) -> bool:
    """Record the compute result of a batch (once) and complete the request when all are scored. The batch's
    outcome (computed; the admitted records the custodian skipped not computed) is then to log. Returns whether
    this call found every batch of the request scored: its outcomes are logged then (analysis_outcomes_log), after
    the results, not while other batches of it are still being computed; the sweep logs those of a long request's
    finished batches meanwhile (analyses_with_outcomes_to_log)."""
    updated = AnalysisBatch.objects.filter(pk=batch_id, status=BatchStatus.ENCRYPTED).update(
        status=BatchStatus.SCORED, score_keys=score_keys, outcome=OUTCOME_COMPUTED, updated_at=timezone.now()
    )
    if not updated:
        return False
    batch = AnalysisBatch.objects.get(pk=batch_id)
    log.info("analysis_batch_scored", request_id=str(batch.request_id), batch=batch.index)
    if AnalysisBatch.objects.filter(request_id=batch.request_id).exclude(status=BatchStatus.SCORED).exists():
        return False
    if AnalysisRequest.objects.filter(pk=batch.request_id, status=AnalysisStatus.RUNNING).update(
        status=AnalysisStatus.COMPLETED, finished_at=timezone.now()
    ):
        log.info("analysis_completed", request_id=str(batch.request_id))
    return True


def analysis_fail(*, batch_id: int, code: str) -> None:
    """Fail the batch's request closed: no batch of it is encrypted or scored from now on."""
    batch = AnalysisBatch.objects.filter(pk=batch_id).first()
    if batch is None:
        return
    if analysis_stop(request_id=batch.request_id, status=AnalysisStatus.FAILED, code=code):
        log.error("analysis_failed", request_id=str(batch.request_id), batch=batch.index, code=code)


def analysis_stop(*, request_id: UUID, status: str, code: str = "") -> bool:
    """End a request that is not finished: failed (with `code`) or cancelled. No batch of it is encrypted or
    scored from now on; the batches whose access was logged get their outcome, not computed, to be logged.
    Returns whether it stopped the request (False if it had finished already)."""
    reason = "request_cancelled" if status == AnalysisStatus.CANCELLED else "request_failed"
    batch_status = BatchStatus.CANCELLED if status == AnalysisStatus.CANCELLED else BatchStatus.FAILED
    with transaction.atomic():
        stopped = (
            AnalysisRequest.objects.filter(pk=request_id)
            .exclude(status__in=FINISHED)
            .update(status=status, failure_code=code, finished_at=timezone.now())
        )
        if not stopped:
            return False
        unfinished = AnalysisBatch.objects.filter(request_id=request_id).exclude(status=BatchStatus.SCORED)
        unfinished.exclude(access_log_tx_id="").update(
            status=batch_status, outcome=OUTCOME_NOT_COMPUTED, outcome_reason=reason, updated_at=timezone.now()
        )
        unfinished.filter(access_log_tx_id="").update(status=batch_status, updated_at=timezone.now())
    return True


OUTCOME_COMPUTED, OUTCOME_NOT_COMPUTED = "computed", "not_computed"


def outcome_batch_id(request_id: object, batch_index: int) -> str:
    """The ledger batch that holds a batch's outcome events, beside the batch of its access events."""
    return f"{access_batch_id(request_id, batch_index)}:outcome"


def analysis_outcomes_log(*, request_id: UUID) -> int:
    """Log on the ledger the outcome of each batch of the request that has one and has not logged it: one
    event for the batch, and one per admitted record the custodian skipped (not computed, with why).

    The batches' access events still to mirror (analysis_access_mirror) are mirrored first, so that an outcome
    finds the accesses it marks. Each batch's logging is claimed first (its outcome_tx_id holds the claim until
    the ledger's transaction replaces it), so that two tasks logging one request's outcomes at once (a collect's
    and the sweep's) do not both submit it. Raises LedgerUnavailable when the ledger does not answer: the claim is
    released and what was not logged stays to log (analyses_with_outcomes_to_log). Returns how many batches it
    logged."""
    analysis_access_mirror(request_id=request_id)
    logged = 0
    pending = AnalysisBatch.objects.filter(request_id=request_id, outcome_tx_id="").exclude(outcome="")
    # One batch in memory at a time, without its lists: a million-record request has 200 batches of 5,000
    # decisions, which held together took 1.7 GB. Its decisions are read only for the records it skipped.
    for batch_id in pending.order_by("index").values_list("pk", flat=True):
        batch = (
            AnalysisBatch.objects.select_related("request__model")
            .defer(*_BATCH_LISTS)
            .filter(pk=batch_id, outcome_tx_id="")
            .first()
        )
        if batch is None:
            continue  # another task logged it meanwhile
        claim = f"{OUTCOME_CLAIM}{int(time.time())}:{uuid.uuid4().hex}"
        if not AnalysisBatch.objects.filter(pk=batch.pk, outcome_tx_id="").update(outcome_tx_id=claim):
            continue  # another task has it
        claimed = AnalysisBatch.objects.filter(pk=batch.pk, outcome_tx_id=claim)
        try:
            entry = access_batch_log(
                batch_id=outcome_batch_id(batch.request_id, batch.index), events=_outcome_events(batch)
            )
        except BaseException:
            claimed.update(outcome_tx_id="")
            raise
        claimed.update(outcome_tx_id=entry.tx_id)
        logged += 1
    if logged:
        log.info("analysis_outcomes_logged", request_id=str(request_id), batches=logged)
    return logged


def analysis_access_mirror(*, request_id: UUID) -> int:
    """Mirror the access events of the request's finished batches (those with an outcome) that the log step left on
    the ledger only: the log step does not wait for the mirror, which is written once the batch is done, off the
    critical path of the batches still running. Read back from the ledger. Safe to run twice at once: a row already
    mirrored is left as it is. Raises LedgerUnavailable when the ledger does not answer (what is left stays pending,
    for the sweep). Returns how many batches it mirrored."""
    pending = AnalysisBatch.objects.filter(request_id=request_id, access_mirror_pending=True).exclude(outcome="")
    pending = pending.order_by("index")
    mirrored = 0
    for batch_id, index, block in pending.values_list("pk", "index", "access_log_block"):
        access_batch_mirror(batch_id=access_batch_id(request_id, index), block_number=block)
        AnalysisBatch.objects.filter(pk=batch_id).update(access_mirror_pending=False)
        mirrored += 1
    return mirrored


_BATCH_LISTS = ("record_version_ids", "decisions", "clipped_record_ids", "column_keys", "score_keys")
OUTCOME_CLAIM = "claim:"  # then the claim's time (Unix seconds) and a random id: the batch's row is not touched
OUTCOME_CLAIM_STALE = timedelta(seconds=60)  # a claim this old belongs to a task that died: it is taken back


def _outcome_events(batch: AnalysisBatch) -> list[dict[str, Any]]:
    request = batch.request
    common = {
        "kind": "outcome",
        "grantee": request.grantee_id,
        "purpose": request.purpose,
        "request_id": str(request.id),
        "model_hash": request.model.sha256,
    }
    events = [
        {
            **common,
            "event_id": f"out:{request.id}:{batch.index}",
            "decision": batch.outcome,
            "reason": batch.outcome_reason or None,
        }
    ]
    if batch.outcome == OUTCOME_COMPUTED and batch.skipped:
        admitted = {d["record_id"]: d for d in batch.decisions if d["decision"] == "admit"}
        for record_id, why in sorted(batch.skipped.items()):
            decision = admitted[record_id]
            events.append(
                {
                    **common,
                    "event_id": f"out:{request.id}:{record_id}",
                    "record_id": record_id,
                    "patient_pseudonym": decision["patient_pseudonym"],
                    "category": decision["category"],
                    "decision": OUTCOME_NOT_COMPUTED,
                    "reason": why,
                }
            )
    return events


def analyses_with_outcomes_to_log() -> list[str]:
    """Requests with a batch whose outcome is known and not yet on the ledger (the ledger was away, say), or whose
    access events are not mirrored yet. A claim left by a task that died is taken back first."""
    stale = time.time() - OUTCOME_CLAIM_STALE.total_seconds()
    claims = AnalysisBatch.objects.filter(outcome_tx_id__startswith=OUTCOME_CLAIM)
    for batch_id, claim in claims.values_list("pk", "outcome_tx_id"):
        claimed_at = claim.removeprefix(OUTCOME_CLAIM).partition(":")[0]
        if not claimed_at.isdigit() or int(claimed_at) < stale:
            AnalysisBatch.objects.filter(pk=batch_id, outcome_tx_id=claim).update(outcome_tx_id="")
    pending = AnalysisBatch.objects.exclude(outcome="").filter(Q(outcome_tx_id="") | Q(access_mirror_pending=True))
    return [str(pk) for pk in pending.values_list("request_id", flat=True).distinct()]


def request_of_batch(*, batch_id: int) -> UUID | None:
    return AnalysisBatch.objects.filter(pk=batch_id).values_list("request_id", flat=True).first()


def analysis_may_wait(*, batch_id: int, seconds: float) -> bool:
    """Whether the batch's request may still wait `seconds` for the ledger before its deadline."""
    batch = AnalysisBatch.objects.select_related("request").filter(pk=batch_id).first()
    if batch is None:
        return False
    deadline = batch.request.created_at + timedelta(seconds=settings.ANALYTICS_REQUEST_DEADLINE_SECONDS)
    return timezone.now() + timedelta(seconds=seconds) <= deadline


def contract_rejection_code(error: ContractRejected) -> str:
    return f"ledger_rejected_{error.code}"


def analyses_stalled(*, stalled_after: timedelta) -> tuple[list[str], list[int]]:
    """Work whose message was lost: requests still queued, and unfinished batches of running requests,
    unchanged for longer than `stalled_after` (longer than any step's time limit, so nothing live).

    Messages can be lost when a whole worker dies (the filesystem broker has already handed the message
    over), when the broker is down as a request is created, or when a compute order cannot be sent. Every
    step is a conditional transition, so sending the work again is always safe.
    """
    cutoff = timezone.now() - stalled_after
    requests = [
        str(pk)
        for pk in AnalysisRequest.objects.filter(status=AnalysisStatus.QUEUED, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    ]
    batches = list(
        AnalysisBatch.objects.filter(
            request__status=AnalysisStatus.RUNNING,
            status__in=[BatchStatus.PENDING, BatchStatus.GATED, BatchStatus.LOGGED, BatchStatus.ENCRYPTED],
            updated_at__lt=cutoff,
        ).values_list("pk", flat=True)
    )
    if requests or batches:
        log.warning("analyses_stalled", requests=len(requests), batches=len(batches))
    return requests, batches
