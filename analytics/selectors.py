"""Reads: a request's progress, its decrypted results (portal mode, requester only), its encrypted
scores (requester-held mode), and the requests a clinician may see."""

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from analytics import engines
from analytics.client import scores_summary
from analytics.diagnostic_models import LinearModel as LinearModel
from analytics.diagnostic_models import all_models
from analytics.keys import secret_context_open
from analytics.models import AnalysisBatch, AnalysisRequest, BatchStatus, DiagnosticModel, KeyMode
from analytics.registry import model_spec
from health_platform.errors import PermissionDenied, ValidationFailed


def analyses_of(*, user: Any) -> QuerySet[AnalysisRequest]:
    """A clinician sees their own requests only."""
    return AnalysisRequest.objects.filter(requester=user).select_related("model")


@dataclass(frozen=True)
class Progress:
    status: str
    failure_code: str
    total: int
    gated: int
    admitted: int
    refused: int
    refusals: dict[str, int]
    scored: int
    batches: int
    batches_done: int


def analysis_progress(*, request: AnalysisRequest) -> Progress:
    """Counted from each batch's counts, never its decisions: a million-record request's progress reads a few
    hundred small rows, not a million decisions."""
    batches = list(request.batches.values("status", "gate_at", "admitted_count", "refusals"))
    refusals: Counter[str] = Counter()
    for batch in batches:
        refusals.update(batch["refusals"])
    gated = [b for b in batches if b["gate_at"] is not None]
    return Progress(
        status=request.status,
        failure_code=request.failure_code,
        total=request.total_records,
        gated=sum(b["admitted_count"] + sum(b["refusals"].values()) for b in gated),
        admitted=sum(b["admitted_count"] for b in gated),
        refused=sum(refusals.values()),
        refusals=dict(refusals),
        scored=sum(b["admitted_count"] for b in batches if b["status"] == BatchStatus.SCORED),
        batches=len(batches),
        batches_done=sum(b["status"] == BatchStatus.SCORED for b in batches),
    )


@dataclass(frozen=True, slots=True)
class ResultRow:
    record_id: str
    patient_pseudonym: str
    score: float
    label: str
    clipped: bool = False  # a feature was outside the model's documented range: the score is less reliable


@dataclass(frozen=True)
class Results:
    model_name: str
    model_version: str
    model_sha256: str
    kind: str
    rows: list[ResultRow]
    refusals: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Count, mean, min, max, median, labels and clipped rows: what the requester's client prints too."""
        rows = self.rows
        return scores_summary(
            [row.score for row in rows], (row.label for row in rows), sum(row.clipped for row in rows)
        )

    def histogram(self, bins: int = 10) -> list[dict[str, float]]:
        if not self.rows:
            return []
        scores = [row.score for row in self.rows]
        low, high = (0.0, 1.0) if self.kind == "logistic" else (min(scores), max(scores))
        width = (high - low) / bins or 1.0
        counts = [0] * bins
        for score in scores:
            counts[min(bins - 1, max(0, int((score - low) / width)))] += 1
        return [{"from": low + i * width, "to": low + (i + 1) * width, "count": c} for i, c in enumerate(counts)]


def analysis_results(*, request: AnalysisRequest, viewer: Any) -> Results:
    """Decrypt and interpret the scores: the requester only, in portal mode, in the web process."""
    spec = model_spec(request.model)
    refusals: Counter[str] = Counter()
    rows = list(analysis_result_rows(request=request, viewer=viewer, refusals=refusals))
    return Results(spec.name, spec.version, spec.sha256, spec.kind, rows, dict(refusals))


def analysis_result_rows(
    *, request: AnalysisRequest, viewer: Any, refusals: Counter[str] | None = None
) -> Iterator[ResultRow]:
    """The result rows of the batches scored so far, in order, decrypted one score ciphertext at a time as they are
    read (the secret context opened once): a million-record request is read in the memory of one batch. Adds each
    batch's refusals to `refusals`. The requester only, in portal mode."""
    if viewer.pk != request.requester_id:
        raise PermissionDenied("Only the requester can read an analysis's results.")
    if request.key_mode != KeyMode.PORTAL or not request.sealed_secret_context:
        raise ValidationFailed(
            "The requester holds this analysis's key: download the encrypted scores.", code="results_held_by_requester"
        )
    spec = model_spec(request.model)
    secret = secret_context_open(
        request_id=request.id, key_id=request.sealed_key_id, sealed=bytes(request.sealed_secret_context)
    )
    engine, blobs = engines.homomorphic_engine(), engines.blob_store()
    chunks = _score_chunks(request, blobs, Counter() if refusals is None else refusals)
    described, sent = itertools.tee(chunks)  # decrypt_each reads one, answers it, then reads the next
    decrypted = engine.decrypt_each(secret, ((ciphertext, len(ids)) for ids, _, _, ciphertext in sent))
    for (ids, pseudonyms, clipped, _), scores in zip(described, decrypted, strict=True):
        for record_id, result in zip(ids, spec.interpret(scores), strict=True):
            yield ResultRow(record_id, pseudonyms[record_id], result["score"], result["label"], record_id in clipped)


def _score_chunks(
    request: AnalysisRequest, blobs: Any, refusals: Counter[str]
) -> Iterator[tuple[list[str], dict[str, str], set[str], bytes]]:
    """Each score ciphertext of the request's scored batches, in order, with its record ids, their patients and
    the clipped ones among them; one batch read at a time."""
    scored = request.batches.filter(status=BatchStatus.SCORED).order_by("index")
    fields = ("request", "refusals", "decisions", "clipped_record_ids", "column_keys", "score_keys")
    for batch in scored.only(*fields).iterator(1):
        refusals.update(batch.refusals)
        pseudonyms = {d["record_id"]: d["patient_pseudonym"] for d in batch.decisions}
        clipped = set(batch.clipped_record_ids)
        for chunk, score_key in zip(batch.column_keys, batch.score_keys, strict=True):
            yield chunk["record_ids"], pseudonyms, clipped, blobs.get(score_key)


def analysis_encrypted_scores(*, request: AnalysisRequest, viewer: Any) -> dict[str, Any]:
    """The score ciphertexts with the records they belong to, for the requester to decrypt."""
    if viewer.pk != request.requester_id:
        raise PermissionDenied("Only the requester can download an analysis's scores.")
    spec = model_spec(request.model)
    blobs = engines.blob_store()
    chunks = []
    batches: list[AnalysisBatch] = list(request.batches.filter(status=BatchStatus.SCORED).order_by("index"))
    for batch in batches:
        pseudonyms = {d["record_id"]: d["patient_pseudonym"] for d in batch.decisions}
        clipped = set(batch.clipped_record_ids)
        for chunk, score_key in zip(batch.column_keys, batch.score_keys, strict=True):
            chunks.append(
                {
                    "record_ids": chunk["record_ids"],
                    "patient_pseudonyms": [pseudonyms[r] for r in chunk["record_ids"]],
                    "clipped_record_ids": [r for r in chunk["record_ids"] if r in clipped],
                    "ciphertext": blobs.get(score_key),
                }
            )
    return {
        "model": {"name": spec.name, "version": spec.version, "sha256": spec.sha256, "kind": spec.kind},
        "chunks": chunks,
    }


# --- model cards (added with the clinicians' API and portal) ------------------------------------


@dataclass(frozen=True)
class ModelFeature:
    code: str
    display: str
    unit: str


@dataclass(frozen=True)
class ModelCard:
    """What a registered model is, what it reads, how well it did, and where its hash is anchored.

    `available` is False when the code's weights no longer hash to the anchored SHA-256 (or the model
    left the registry): the card then carries the anchored facts and `unavailable_code`, nothing else.
    """

    name: str
    version: str
    sha256: str
    anchor_tx_id: str
    anchor_block: int | None
    registered_at: Any
    available: bool
    unavailable_code: str = ""
    kind: str = ""
    purpose: str = ""
    purpose_label: str = ""
    category: str = ""
    category_label: str = ""
    description: str = ""
    positive_label: str = ""
    negative_label: str = ""
    features: list[ModelFeature] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    """A model trained on the platform: its training run's lineage as the ledger holds it (empty for the others)."""
    since_trained: dict[str, Any] = field(default_factory=dict)
    """A model trained on the platform: its lineage's consents since revoked and records since erased (empty before
    they were first counted, and for the catalogue's models)."""
    retirement: dict[str, Any] = field(default_factory=dict)
    """Empty, or why the model was retired from new analyses: reason, reason_label, revocations, retired_at, tx_id
    and block_number on the ledger (tx_id empty while the ledger has not taken it yet)."""

    @property
    def retired(self) -> bool:
        return bool(self.retirement)


def declared_model_families() -> dict[str, LinearModel]:
    """Every declared model family ("breast-cancer": its purpose without the diagnostic-model: prefix) with the
    catalogue's latest declared model of it, by family name: the families a training run can learn."""
    from chaincode.vocabulary import model_family_of

    families = {model_family_of(spec.purpose): spec for spec in all_models()}  # a later version replaces an earlier
    return dict(sorted(families.items()))


def declared_model_of_family(*, family: str) -> LinearModel | None:
    """The catalogue's latest declared model of a model family ("breast-cancer"): what a training run of the
    family learns (its features, their documented range, its kind and category); None if no model is declared."""
    return declared_model_families().get(family)


# The version of a model that new requests use: the one registered last. A model trained on the platform is
# registered when its run ends, so a retrained model serves from then on, whatever its version label (run-<hex>).
NEWEST_FIRST = ("-registered_at", "-pk")


def diagnostic_models_latest() -> list[DiagnosticModel]:
    """The version of each registered model that a new request uses (as analysis_request_create picks it), retired
    or not: a retired model is listed as retired, and a request for it refused, until it is retrained."""
    latest: dict[str, DiagnosticModel] = {}
    for model in DiagnosticModel.objects.order_by("name", *NEWEST_FIRST):
        latest.setdefault(model.name, model)
    return list(latest.values())


def diagnostic_model_get(*, name: str, version: str | None = None) -> DiagnosticModel | None:
    """A registered model by name: the given version, else the one a new request uses."""
    if "\x00" in name or "\x00" in (version or ""):
        return None  # no model is named so, and PostgreSQL cannot even be asked (text holds no NUL)
    models = DiagnosticModel.objects.filter(name=name)
    if version is not None:
        models = models.filter(version=version)
    return models.order_by(*NEWEST_FIRST).first()


def diagnostic_model_card(*, model: DiagnosticModel) -> ModelCard:
    from chaincode.vocabulary import CATEGORIES
    from health_platform.model_catalogue import consent_purposes
    from records.codes import FEATURE_CODES_BY_CODE

    anchored: dict[str, Any] = {
        "name": model.name,
        "version": model.version,
        "sha256": model.sha256,
        "anchor_tx_id": model.anchor_tx_id,
        "anchor_block": model.anchor_block,
        "registered_at": model.registered_at,
        "since_trained": dict(model.since_trained or {}),
        "retirement": _retirement(model),
    }
    try:
        spec = model_spec(model)
    except ValidationFailed as error:
        return ModelCard(**anchored, available=False, unavailable_code=error.code)
    features = []
    for code in spec.feature_codes:
        known = FEATURE_CODES_BY_CODE.get(code)
        features.append(ModelFeature(code, known.display if known else code, known.unit if known else ""))
    return ModelCard(
        **anchored,
        available=True,
        kind=spec.kind,
        purpose=spec.purpose,
        purpose_label=consent_purposes().get(spec.purpose, spec.purpose),
        category=spec.category,
        category_label=CATEGORIES.get(spec.category, spec.category),
        description=spec.description,
        positive_label=spec.positive_label,
        negative_label=spec.negative_label,
        features=features,
        metrics=dict(spec.metrics),
        lineage=dict(model.lineage or {}),
    )


def _retirement(model: DiagnosticModel) -> dict[str, Any]:
    from chaincode.vocabulary import RETIREMENT_REASONS

    if model.retired_at is None:
        return {}
    reason = model.retirement.get("reason", "")
    return {
        "reason": reason,
        "reason_label": RETIREMENT_REASONS.get(reason, reason),
        "revocations": model.retirement.get("revocations"),
        "retired_at": model.retired_at,
        "tx_id": model.retirement.get("tx_id", ""),
        "block_number": model.retirement.get("block_number"),
    }
