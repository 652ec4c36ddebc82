"""Writes: analysis requests. A request is planned and run batch by batch by the pipeline
(analytics.pipeline) on the custodian workers (analytics.tasks).

Other apps reach analytics through here: a training round (training) gates and logs its records with the
pipeline's own gate and events, encrypts with the same engine, and registers its model in the same registry.
"""

import re
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction

from analytics import engines, pipeline, tasks
from analytics.access import user_may_request_analyses
from analytics.engines import blob_store as blob_store
from analytics.engines import homomorphic_engine as homomorphic_engine
from analytics.keys import secret_context_open as secret_context_open
from analytics.keys import secret_context_seal as secret_context_seal
from analytics.models import (
    FINISHED,
    AnalysisBatch,
    AnalysisRequest,
    AnalysisStatus,
    CohortKind,
    KeyMode,
)
from analytics.pipeline import LedgerNotAnswering as LedgerNotAnswering
from analytics.pipeline import record_access_events as record_access_events
from analytics.pipeline import records_gate as records_gate
from analytics.registry import model_spec
from analytics.registry import trained_model_register as trained_model_register
from analytics.registry import trained_model_retire as trained_model_retire
from analytics.registry import trained_model_retirement_landed as trained_model_retirement_landed
from analytics.registry import trained_model_since_trained_record as trained_model_since_trained_record
from analytics.registry import trained_models_retirement_pending as trained_models_retirement_pending
from analytics.selectors import diagnostic_model_get
from health_platform.errors import Conflict, PermissionDenied, ValidationFailed
from health_platform.selectors import inactive_grantee_ids
from records.models import RecordVersion
from records.services import ErasureRefused

log = structlog.get_logger(__name__)

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")


def analysis_request_create(
    *,
    requester: Any,
    model_name: str,
    cohort_kind: str,
    pseudonyms: list[str] | None = None,
    key_mode: str = KeyMode.PORTAL,
    public_context: bytes | None = None,
    batch_size: int | None = None,
) -> AnalysisRequest:
    """Create a request and queue it. Keys: generated here (portal mode) or uploaded (requester mode)."""
    if not user_may_request_analyses(requester) or not hasattr(requester, "clinician_profile"):
        raise PermissionDenied("Only a registered clinician can request an analysis.")
    if requester.clinician_profile.grantee_id in inactive_grantee_ids():
        # The gate would refuse every record (grantee_inactive): say so now rather than run the cohort for nothing.
        raise PermissionDenied(
            "Your entry in the directory is deactivated: you cannot request analyses.", code="grantee_inactive"
        )
    model = diagnostic_model_get(name=model_name)
    if model is None:
        raise ValidationFailed("Unknown model.", code="unknown_model", detail={"field": "model"})
    if model.retired_at is not None:
        raise Conflict(
            "This model is retired from new analyses: too many of the consents it was trained under have been "
            "withdrawn since. It serves again once it is retrained.",
            code="model_retired",
            detail={"field": "model", "reason": model.retirement.get("reason", "")},
        )
    spec = model_spec(model)
    if cohort_kind not in CohortKind.values:
        raise ValidationFailed("Unknown cohort kind.", code="invalid_cohort", detail={"field": "cohort_kind"})
    cohort = _checked_pseudonyms(pseudonyms) if cohort_kind == CohortKind.EXPLICIT else []
    size = settings.ANALYTICS_BATCH_SIZE if batch_size is None else batch_size
    if not 1 <= size <= settings.ANALYTICS_MAX_BATCH_SIZE:
        raise ValidationFailed(
            f"batch_size must be 1 to {settings.ANALYTICS_MAX_BATCH_SIZE}.",
            code="invalid_batch_size",
            detail={"field": "batch_size"},
        )

    engine, blobs = engines.homomorphic_engine(), engines.blob_store()
    if key_mode == KeyMode.PORTAL:
        try:
            keys = engine.keygen(score_bound=spec.score_bound())
        except ValueError:
            raise _model_out_of_range() from None
    elif key_mode == KeyMode.REQUESTER:
        keys = _uploaded_public_context(engine, public_context)
        if engine.score_capacity(keys.compute) < spec.score_bound():
            raise ValidationFailed(
                "This model's scores exceed what the uploaded context's parameters hold: they would decrypt to wrong "
                "numbers. Make keys for it with the platform's client: analytics.client keygen --wide.",
                code="public_context_out_of_range",
                detail={"field": "public_context"},
            )
    else:
        raise ValidationFailed("Unknown key mode.", code="invalid_key_mode", detail={"field": "key_mode"})

    profile = requester.clinician_profile
    with transaction.atomic():
        request = AnalysisRequest(
            requester=requester,
            grantee_id=profile.grantee_id,
            organisation_grantee_id=profile.organisation.grantee_id if profile.organisation else "",
            model=model,
            purpose=spec.purpose,
            cohort_kind=cohort_kind,
            cohort_pseudonyms=cohort,
            key_mode=key_mode,
            public_context_key=blobs.put(keys.public),
            compute_context_key=blobs.put(keys.compute),
            batch_size=size,
        )
        if key_mode == KeyMode.PORTAL:
            request.sealed_key_id, request.sealed_secret_context = secret_context_seal(
                request_id=request.id, secret=keys.secret
            )
        request.save()
        transaction.on_commit(lambda: _enqueue_start(request.id))
    log.info(
        "analysis_requested",
        request_id=str(request.id),
        model=str(model),
        cohort_kind=cohort_kind,
        key_mode=key_mode,
        requester_id=requester.pk,
    )
    return request


def _model_out_of_range() -> Conflict:
    return Conflict(
        "This model's scores exceed what homomorphic encryption can hold here: it cannot be used for analyses.",
        code="model_out_of_range",
        detail={"field": "model"},
    )


def _checked_pseudonyms(pseudonyms: Any) -> list[str]:
    if not isinstance(pseudonyms, list) or not pseudonyms:
        raise ValidationFailed(
            "List at least one pseudonymous patient id.", code="invalid_cohort", detail={"field": "pseudonyms"}
        )
    if len(pseudonyms) > settings.ANALYTICS_MAX_COHORT:
        raise ValidationFailed(
            f"At most {settings.ANALYTICS_MAX_COHORT} patients per request.",
            code="cohort_too_large",
            detail={"field": "pseudonyms"},
        )
    bad = [i for i, p in enumerate(pseudonyms) if not isinstance(p, str) or not _PSEUDONYM.fullmatch(p)]
    if bad:
        raise ValidationFailed(
            "Pseudonymous ids are 64 lowercase hex characters.",
            code="invalid_cohort",
            detail={"field": "pseudonyms", "indexes": bad[:20]},
        )
    return list(dict.fromkeys(pseudonyms))


def _uploaded_public_context(engine: Any, public_context: bytes | None) -> Any:
    if not public_context:
        raise ValidationFailed(
            "Requester-held keys need the public context.",
            code="public_context_missing",
            detail={"field": "public_context"},
        )
    try:
        holds_secret = engine.is_secret_context(public_context)
        keys = engine.public_parts(public_context)
    except Exception:  # TenSEAL raises bare exceptions for malformed input
        raise ValidationFailed(
            "The public context cannot be read.", code="public_context_invalid", detail={"field": "public_context"}
        ) from None
    if holds_secret:
        # Refused and not stored: the server must never hold a key that opens the requester's results.
        raise ValidationFailed(
            "The uploaded context holds a secret key; upload the public context only.",
            code="secret_key_uploaded",
            detail={"field": "public_context"},
        )
    return keys


def _enqueue_start(request_id: object) -> None:
    tasks.analysis_start.delay(str(request_id))


def analysis_request_cancel(*, requester: Any, request: AnalysisRequest) -> AnalysisRequest:
    """Cancel a request its requester no longer wants: nothing more of it is gated, encrypted or scored, and
    the access log says that what had been admitted was not computed (request_cancelled). A request that has
    finished (completed, failed, cancelled) is refused with analysis_finished."""
    if request.requester_id != getattr(requester, "pk", None):
        raise PermissionDenied("Only the clinician who asked for an analysis can cancel it.")
    if not pipeline.analysis_stop(request_id=request.pk, status=AnalysisStatus.CANCELLED):
        raise Conflict(
            "The analysis has finished; there is nothing to cancel.",
            code="analysis_finished",
            detail={"status": AnalysisRequest.objects.get(pk=request.pk).status},
        )
    transaction.on_commit(lambda: tasks.analysis_outcomes_log.delay(str(request.pk)))
    log.info("analysis_cancelled", request_id=str(request.pk), requester_id=requester.pk)
    request.refresh_from_db()
    return request


# --- a patient's erasure (records.erasure): the ciphertexts analyses keep in the blob store ---------------------


def analysis_erasure_check(*, patient: Any) -> None:
    """Refuse a patient's erasure (analysis_in_progress) while an analysis whose batches list one of their records'
    versions is queued or running: its workers may be writing ciphertexts of theirs right now. Once it has
    finished, analysis_blobs_erase can find and delete every one of them."""
    version_ids = set(RecordVersion.objects.filter(record__patient=patient).values_list("pk", flat=True))
    running = AnalysisBatch.objects.exclude(request__status__in=FINISHED).values_list("record_version_ids", flat=True)
    if any(version_ids.intersection(listed) for listed in running.iterator()):
        raise ErasureRefused(
            "An analysis that uses your records is running. Erase again when it has finished (minutes, usually).",
            code="analysis_in_progress",
        )


def analysis_blobs_erase(*, patient: Any, record_ids: list[str]) -> int:
    """Delete the ciphertext blobs of every analysis chunk that holds one of `record_ids` (their encrypted features
    and their encrypted scores); return how many blobs were deleted.

    A chunk packs up to a few thousand records in each ciphertext, so the chunk goes whole: it is dropped from its
    batch, and its records are marked in the batch's `skipped` ("erased" for the patient's, "erased_with_chunk"
    for the others, whose scores the requester loses and gets again by running the analysis again). Idempotent:
    a chunk dropped is not found again. The requester's contexts are not the patient's and stay."""
    erased = set(record_ids)
    blobs = engines.blob_store()
    deleted = 0
    candidates = AnalysisBatch.objects.filter(request__status__in=FINISHED).exclude(column_keys=[])
    for batch in candidates.iterator():
        keep = [not erased.intersection(chunk["record_ids"]) for chunk in batch.column_keys]
        if all(keep):
            continue
        skipped = dict(batch.skipped)
        for index, chunk in enumerate(batch.column_keys):
            if keep[index]:
                continue
            keys = [*chunk.get("columns", []), *([chunk["score"]] if "score" in chunk else [])]
            keys += [batch.score_keys[index]] if index < len(batch.score_keys) else []
            deleted += sum(blobs.delete(key) for key in keys)
            skipped.update({r: "erased" if r in erased else "erased_with_chunk" for r in chunk["record_ids"]})
        batch.column_keys = [chunk for chunk, kept in zip(batch.column_keys, keep, strict=True) if kept]
        batch.score_keys = [key for key, kept in zip(batch.score_keys, keep, strict=False) if kept]
        batch.skipped = skipped
        batch.save(update_fields=["column_keys", "score_keys", "skipped", "updated_at"])
    log.info("analysis_blobs_erased", patient_id=str(patient.pk), blobs=deleted)
    return deleted
