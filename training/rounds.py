"""A training run from its start to its lineage: the federated rounds over Flower (training.federation), each
organisation's gated and logged step (training.local), the steward's sums (training.steward), then ONE ledger
transaction with the lineage (training.lineage) and the trained model into the platform's model registry, beside
the catalogue's models. Run by a worker (training.tasks); the run's state says what is done, so a second delivery
does nothing."""

import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import structlog
from django.utils import timezone

from analytics.selectors import LinearModel, declared_model_of_family
from analytics.services import (
    LedgerNotAnswering,
    blob_store,
    homomorphic_engine,
    secret_context_open,
    trained_model_register,
)
from chaincode.vocabulary import training_purpose
from health_platform import bootstrap
from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import OrganisationLineage, TrainingRunRequest
from training.federation import FederationFailed, federate
from training.labels import LabelSource, demo_label_source
from training.lineage import lineage_roots, trainer_sha256
from training.local import OrganisationRecords, RunPlan
from training.maths import record_sensitivity
from training.models import TrainingRound, TrainingRun, TrainingStatus
from training.privacy import GaussianBudget, noise_source
from training.steward import PrivateRounds, RunSteward

log = structlog.get_logger(__name__)


def vault_id(run_id: object) -> str:
    """The key vault's associated data names a training run apart from an analysis request."""
    return f"training-run|{run_id}"


def training_run_execute(*, run_id: str, observe: Any = None, labels: LabelSource | None = None) -> TrainingRun | None:
    """Run a queued run to its end (once: a second delivery finds it running or finished and returns). An id that is
    not a run's (malformed, or of no run) does nothing.

    `labels`: where the organisations read their records' labels (the demo datasets' by default: training.labels)."""
    try:
        run_id = str(uuid.UUID(str(run_id)))
    except ValueError:
        log.warning("training_run_id_invalid")
        return None
    if not TrainingRun.objects.filter(pk=run_id, status=TrainingStatus.QUEUED).update(status=TrainingStatus.RUNNING):
        return None
    run = TrainingRun.objects.get(pk=run_id)
    try:
        _execute(run, observe, labels)
    except (FederationFailed, LedgerNotAnswering, LedgerUnavailable, ContractRejected) as error:
        code = error.code if isinstance(error, FederationFailed) else _failure_code(error)
        cause = error.__cause__
        if isinstance(error, FederationFailed) and cause is not None:
            code = _failure_code(cause) or code
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingStatus.FAILED, failure_code=code, finished_at=timezone.now()
        )
        log.error("training_run_failed", run_id=str(run.pk), code=code)
    return TrainingRun.objects.get(pk=run.pk)


def _failure_code(error: BaseException) -> str:
    if isinstance(error, ContractRejected):
        return f"ledger_rejected_{error.code}"
    if isinstance(error, LedgerNotAnswering | LedgerUnavailable):
        return "ledger_unavailable"
    return ""


def _execute(run: TrainingRun, observe: Any, labels: LabelSource | None) -> None:
    spec = declared_model_of_family(family=run.model_family)
    if spec is None:
        raise FederationFailed("unknown_model")
    engine, blobs = homomorphic_engine(), blob_store()
    plan = RunPlan(
        run_id=str(run.pk),
        kind=run.kind,
        purpose=training_purpose(run.model_family),
        spec=spec,
        validation_fraction=float(run.hyperparameters["validation_fraction"]),
        target_bound=run.hyperparameters.get("dp_target_bound"),
    )
    labels = labels or demo_label_source(
        dataset=spec.dataset, feature_codes=spec.feature_codes, kind=spec.kind, positive_label=spec.positive_label
    )
    public = blobs.get(run.public_context_key)
    trainers = [
        OrganisationRecords(plan, organisation, list(ids), public, labels)
        for organisation, ids in sorted(run.organisations.items())
    ]
    steward = RunSteward(
        engine=engine,
        secret=secret_context_open(
            request_id=vault_id(run.pk), key_id=run.sealed_key_id, sealed=bytes(run.sealed_secret_context)
        ),
        kind=run.kind,
        features=len(spec.feature_codes),
        ridge=float(run.hyperparameters["ridge"]),
        privacy=_private_rounds(run, plan),
    )
    federate(
        trainers=trainers,
        steward=steward,
        rounds=run.rounds_requested,
        initial=np.zeros(len(spec.feature_codes) + 1),
        aggregation_context=blobs.get(run.compute_context_key),
        add=engine.add,
        observe=observe,
    )
    manifest = {trainer.organisation: list(trainer.used.values()) for trainer in trainers}
    counts = {trainer.organisation: trainer.counts for trainer in trainers}
    TrainingRound.objects.bulk_create(
        TrainingRound(
            run=run,
            index=index,
            aggregate_sha256=digest,
            contributions={trainer.organisation: trainer.round_counts.get(index, 0) for trainer in trainers},
        )
        for index, digest in enumerate(steward.round_hashes, start=1)
    )
    run.manifest, run.organisation_counts = manifest, counts
    run.save(update_fields=["manifest", "organisation_counts"])
    if not any(manifest.values()):
        raise FederationFailed("no_admitted_records")
    weights, bias = plan.scaling.unscale(steward.weights)
    trained = _trained_model(spec, run, weights, bias, steward.metrics)
    lineage = _lineage_record(run, manifest, trained, steward)
    trained_model_register(spec=trained, lineage=_lineage_document(lineage))
    run.status, run.finished_at = TrainingStatus.COMPLETED, timezone.now()
    run.lineage_tx_id, run.lineage_block = lineage.tx_id, lineage.block_number
    run.weights_sha256, run.model_name, run.model_version = trained.sha256, trained.name, trained.version
    run.save()  # the run is this task's since it moved it from queued to running
    log.info("training_run_completed", run_id=str(run.pk), weights_sha256=trained.sha256, tx_id=lineage.tx_id)


def _private_rounds(run: TrainingRun, plan: RunPlan) -> PrivateRounds | None:
    """The run's differential privacy, if it asked for it (training.privacy)."""
    terms = run.hyperparameters
    if terms.get("dp_epsilon") is None:
        return None
    return PrivateRounds(
        budget=GaussianBudget(
            epsilon=float(terms["dp_epsilon"]), delta=float(terms["dp_delta"]), rounds=run.rounds_requested
        ),
        sensitivity=record_sensitivity(run.kind, len(plan.spec.feature_codes) + 1, plan.target_bound),
        noise=noise_source(),
    )


def trained_model_version(run_id: object) -> str:
    """A trained model's version label: the run it came from (sorts after the catalogue's numbered versions)."""
    return f"run-{str(run_id).replace('-', '')[:12]}"


def _trained_model(
    spec: LinearModel, run: TrainingRun, weights: np.ndarray, bias: float, metrics: dict[str, float]
) -> LinearModel:
    """The family's declared model with the run's weights: same features, documented range, purpose and labels."""
    return replace(
        spec,
        version=trained_model_version(run.pk),
        weights=tuple(float(w) for w in weights),
        bias=float(bias),
        metrics=dict(metrics),
        description=f"{spec.description} Trained on this platform by federated training run {run.pk}.",
    )


def steward_actor(steward: Any) -> str:
    """How the ledger names a model steward: model-steward:<user id>."""
    return f"model-steward:{steward.pk}"


def _lineage_record(run: TrainingRun, manifest: dict, trained: LinearModel, steward: RunSteward) -> Any:
    """ONE RecordTrainingRun transaction with the run's whole lineage."""
    parts, overall = lineage_roots(manifest)
    request = TrainingRunRequest(
        run_id=str(run.pk),
        model_family=run.model_family,
        model_version=trained.version,
        steward=steward_actor(run.steward),
        organisations=tuple(
            OrganisationLineage(p.organisation, p.training_set_root, p.consent_root, p.record_count, p.consent_count)
            for p in parts
        ),
        training_set_root=overall.training_set_root,
        consent_root=overall.consent_root,
        record_count=overall.record_count,
        consent_count=overall.consent_count,
        trainer_sha256=trainer_sha256(),
        hyperparameters=dict(run.hyperparameters),
        rounds=run.rounds_requested,
        round_aggregates=tuple(steward.round_hashes),
        metrics=dict(steward.metrics),
        weights_sha256=trained.sha256,
        dp_epsilon=steward.epsilon_spent,
        dp_delta=None if steward.privacy is None else steward.privacy.budget.delta,
    )
    return bootstrap.contracts().record_training_run(request)


def _lineage_document(lineage: Any) -> dict[str, Any]:
    """The lineage as the model registry keeps it beside the model (for its card)."""
    document = {name: getattr(lineage, name) for name in lineage.__dataclass_fields__}
    document["organisations"] = [dict(o.__dict__) for o in lineage.organisations]
    document["round_aggregates"] = list(lineage.round_aggregates)
    document["hyperparameters"] = dict(lineage.hyperparameters)
    document["metrics"] = dict(lineage.metrics)
    return document
