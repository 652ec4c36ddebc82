"""A training run from its start to its lineage: the federated rounds over Flower (training.federation), each
organisation's gated and logged step (training.local), the steward's sums (training.steward), then ONE ledger
transaction with the lineage (training.lineage) and the trained model into the platform's model registry, beside
the catalogue's models. Run by a worker (training.tasks); the run's state says what is done, so a second delivery
does nothing."""

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
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
from health_platform.roles import model_steward_actor
from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import OrganisationLineage, TrainingRunRequest
from training.federation import FederationFailed, federate
from training.invitations import UNREACHABLE, InvitedOrganisation, invited_organisations
from training.labels import LabelSource, demo_label_source
from training.lineage import index_rows, lineage_roots, trainer_sha256
from training.local import OrganisationRecords, RunPlan
from training.maths import record_sensitivity
from training.models import TrainingRound, TrainingRun, TrainingSetEntry, TrainingStatus
from training.privacy import GaussianBudget, noise_source
from training.steward import PrivateRounds, RunSteward
from training.tls import FlowerTls

log = structlog.get_logger(__name__)


def vault_id(run_id: object) -> str:
    """The key vault's associated data names a training run apart from an analysis request."""
    return f"training-run|{run_id}"


def training_run_execute(*, run_id: str, observe: Any = None, labels: LabelSource | None = None) -> TrainingRun | None:
    """Run a queued run to its end (once: a second delivery finds it running or finished and returns). An id that is
    not a run's (malformed, or of no run) does nothing.

    The ledger not answering (the gate, the log, the lineage, the model's anchor) is never a refusal: the run goes
    back to queued with one more attempt and the caller (training.tasks) tries again after
    `ledger_wait_seconds(run)`, until TRAINING_RUN_DEADLINE_SECONDS after the run was asked for; then it fails with
    ledger_unavailable. Once its federation has finished, its result is kept (run.outcome), so a run interrupted at
    its lineage or its registration resumes there, without training (and reading records) again.

    `labels`: where the organisations read their records' labels (the demo datasets' by default: training.labels)."""
    try:
        run_id = str(uuid.UUID(str(run_id)))
    except ValueError:
        log.warning("training_run_id_invalid")
        return None
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingStatus.QUEUED).update(
        status=TrainingStatus.RUNNING, claimed_at=timezone.now()
    )
    if not claimed:
        return None
    run = TrainingRun.objects.get(pk=run_id)
    try:
        if not run.outcome:
            _federate(run, observe, labels)
        _publish(run)
    except (FederationFailed, *_LEDGER_ERRORS) as error:
        code = failure_code(error)
        if code in WAITABLE and _may_wait(run):
            TrainingRun.objects.filter(pk=run.pk).update(status=TrainingStatus.QUEUED, attempts=F("attempts") + 1)
            log.warning("training_run_ledger_wait", run_id=str(run.pk), attempt=run.attempts + 1, code=code)
        else:
            TrainingRun.objects.filter(pk=run.pk).update(
                status=TrainingStatus.FAILED, failure_code=code, finished_at=timezone.now()
            )
            log.error("training_run_failed", run_id=str(run.pk), code=code)
    return TrainingRun.objects.get(pk=run.pk)


LEDGER_UNAVAILABLE = "ledger_unavailable"
# What a run waits out (nothing is trained meanwhile), then tries again: the ledger away, or an invited
# organisation's instance (its web server, or its worker that never took the invitation).
WAITABLE = frozenset({LEDGER_UNAVAILABLE, UNREACHABLE})


def ledger_wait_seconds(run: TrainingRun) -> float:
    """How long a run the ledger did not answer waits before its next attempt (the analyses' backoff)."""
    return bootstrap.ledger_retry_countdown(retries=max(run.attempts - 1, 0))


def _may_wait(run: TrainingRun) -> bool:
    deadline = run.created_at + timedelta(seconds=settings.TRAINING_RUN_DEADLINE_SECONDS)
    wait = bootstrap.ledger_retry_countdown(retries=run.attempts)
    return timezone.now() + timedelta(seconds=wait) <= deadline


def failure_code(error: BaseException) -> str:
    """A run's (or a participation's) failure code: a federation's own, or its cause's when the ledger was behind it."""
    if isinstance(error, FederationFailed):
        cause = error.__cause__
        return failure_code(cause) if isinstance(cause, _LEDGER_ERRORS) else error.code
    if isinstance(error, ContractRejected):
        return f"ledger_rejected_{error.code}"
    return LEDGER_UNAVAILABLE


_LEDGER_ERRORS = (LedgerNotAnswering, LedgerUnavailable, ContractRejected)


def _federate(run: TrainingRun, observe: Any, labels: LabelSource | None) -> None:
    """The federated rounds; their result kept in one database transaction (manifest, counts, rounds, outcome)."""
    spec = _spec(run)
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
    invited = invited_organisations(run)
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
    TrainingRound.objects.filter(run=run).delete()  # an attempt the ledger interrupted: its rounds are done again

    def round_opened(index: int) -> None:
        """The round the steward just opened, on the run's page at once (its counts: the organisations' so far)."""
        TrainingRound.objects.create(
            run=run,
            index=index,
            aggregate_sha256=steward.round_hashes[index - 1],
            contributions={trainer.organisation: trainer.round_counts.get(index, 0) for trainer in trainers},
        )
        run.organisation_counts = {trainer.organisation: trainer.counts for trainer in trainers}
        run.save(update_fields=["organisation_counts"])

    def invite(address: str, tls: FlowerTls, tokens: list[str]) -> None:
        for organisation, token in zip(invited, tokens, strict=True):
            organisation.invite(
                address=address, tls=tls, token=token, public_context=public, feature_codes=spec.feature_codes
            )

    try:
        federate(
            trainers=trainers,
            steward=steward,
            rounds=run.rounds_requested,
            initial=np.zeros(len(spec.feature_codes) + 1),
            aggregation_context=blobs.get(run.compute_context_key),
            observe=observe,
            round_opened=round_opened,
            invited=len(invited),
            invite=invite if invited else None,
            bind=settings.TRAINING_AGGREGATOR_BIND,
            host=settings.TRAINING_AGGREGATOR_HOST,
            connect_timeout=settings.TRAINING_CONNECT_SECONDS,
        )
    except FederationFailed as error:
        told = _invited_cause(error, invited)
        if told is error:
            raise
        raise told from error
    remote = {o.organisation: o.outcome(timeout=settings.TRAINING_PEER_TIMEOUT_SECONDS) for o in invited}
    manifest = {trainer.organisation: list(trainer.used.values()) for trainer in trainers}
    manifest.update({organisation: outcome["manifest"] for organisation, outcome in remote.items()})
    weights, bias = plan.scaling.unscale(steward.weights)
    run.manifest = dict(sorted(manifest.items()))
    run.organisation_counts = {trainer.organisation: trainer.counts for trainer in trainers}
    run.organisation_counts.update({organisation: outcome["counts"] for organisation, outcome in remote.items()})
    for training_round in TrainingRound.objects.filter(run=run) if remote else []:
        for organisation, outcome in remote.items():
            training_round.contributions[organisation] = outcome["round_counts"].get(training_round.index, 0)
        training_round.save(update_fields=["contributions"])
    if any(manifest.values()):
        run.outcome = {
            "weights": [float(w) for w in weights],
            "bias": float(bias),
            "metrics": dict(steward.metrics),
            "round_hashes": list(steward.round_hashes),
            "dp_epsilon": steward.epsilon_spent,
            "dp_delta": None if steward.privacy is None else steward.privacy.budget.delta,
        }
    run.save(update_fields=["manifest", "organisation_counts", "outcome"])  # one UPDATE: all of it or none
    if not any(manifest.values()):
        raise FederationFailed("no_admitted_records")


def _invited_cause(error: FederationFailed, invited: list[InvitedOrganisation]) -> FederationFailed:
    """Why a federation with invited organisations failed, as their instances tell it: one of them away
    (organisation_unreachable) or its ledger away (ledger_unavailable) is waited out; otherwise the federation's own
    code, or the first code an organisation reports."""
    if not invited or error.code in WAITABLE:
        return error
    reported = [code for code in (organisation.failure() for organisation in invited) if code]
    for code in reported:
        if code in WAITABLE:
            return FederationFailed(code)
    return FederationFailed(reported[0]) if reported and error.code == "organisation_missing" else error


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


def _spec(run: TrainingRun) -> LinearModel:
    spec = declared_model_of_family(family=run.model_family)
    if spec is None:
        raise FederationFailed("unknown_model")
    return spec


def _publish(run: TrainingRun) -> None:
    """The lineage in ONE ledger transaction (the same run again answers the original), then the model into the
    registry beside the catalogue's; the run completed."""
    outcome = run.outcome
    trained = _trained_model(_spec(run), run, np.asarray(outcome["weights"]), outcome["bias"], outcome["metrics"])
    lineage = _lineage_record(run, run.manifest, trained, outcome["round_hashes"])
    trained_model_register(spec=trained, lineage=_lineage_document(lineage))
    run.status, run.finished_at = TrainingStatus.COMPLETED, timezone.now()
    run.lineage_tx_id, run.lineage_block = lineage.tx_id, lineage.block_number
    run.weights_sha256, run.model_name, run.model_version = trained.sha256, trained.name, trained.version
    with transaction.atomic():  # a completed run always has its training-set index, and only a completed one
        run.save()  # the run is this task's since it moved it from queued to running
        TrainingSetEntry.objects.bulk_create(training_set_index(run), batch_size=1000)
    log.info("training_run_completed", run_id=str(run.pk), weights_sha256=trained.sha256, tx_id=lineage.tx_id)


def training_runs_stalled(*, queued_for: timedelta, running_for: timedelta) -> list[str]:
    """Runs whose work is not moving: queued for longer than `queued_for` (its message was lost: a retry's countdown
    is at most ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS), or taken by a worker longer ago than `running_for` (the
    task's hard time limit and a margin: that worker is dead). A dead worker's run goes back to queued here, once
    (a conditional update), so that sending it again is safe."""
    now = timezone.now()
    last_moved = Coalesce("claimed_at", "created_at")
    queued = TrainingRun.objects.alias(moved=last_moved).filter(
        status=TrainingStatus.QUEUED, moved__lt=now - queued_for
    )
    dead = list(
        TrainingRun.objects.filter(status=TrainingStatus.RUNNING, claimed_at__lt=now - running_for).values_list(
            "pk", "claimed_at"
        )
    )
    revived = [
        pk
        for pk, claimed_at in dead
        if TrainingRun.objects.filter(pk=pk, status=TrainingStatus.RUNNING, claimed_at=claimed_at).update(
            status=TrainingStatus.QUEUED, claimed_at=now
        )
    ]
    if revived:
        log.warning("training_runs_revived", runs=len(revived))
    return [str(pk) for pk in [*queued.values_list("pk", flat=True), *revived]]


def training_set_index(run: TrainingRun) -> list[TrainingSetEntry]:
    """The index rows of a run's training set, from its manifest (unsaved)."""
    invited = set(run.invited)  # their records are in their instances' databases, and indexed there
    return [TrainingSetEntry(run=run, **row) for row in index_rows(run.manifest) if row["organisation"] not in invited]


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


def _lineage_record(run: TrainingRun, manifest: dict, trained: LinearModel, round_hashes: list[str]) -> Any:
    """ONE RecordTrainingRun transaction with the run's whole lineage."""
    parts, overall = lineage_roots(manifest)
    request = TrainingRunRequest(
        run_id=str(run.pk),
        model_family=run.model_family,
        model_version=trained.version,
        steward=model_steward_actor(run.steward),
        organisations=tuple(
            OrganisationLineage(
                p.organisation,
                p.training_set_root,
                p.consent_root,
                p.record_count,
                p.consent_count,
                left_out=left_out(run.organisation_counts.get(p.organisation, {})),
            )
            for p in parts
        ),
        training_set_root=overall.training_set_root,
        consent_root=overall.consent_root,
        record_count=overall.record_count,
        consent_count=overall.consent_count,
        trainer_sha256=trainer_sha256(),
        hyperparameters=dict(run.hyperparameters),
        rounds=run.rounds_requested,
        round_aggregates=tuple(round_hashes),
        metrics=dict(run.outcome["metrics"]),
        weights_sha256=trained.sha256,
        dp_epsilon=run.outcome.get("dp_epsilon"),
        dp_delta=run.outcome.get("dp_delta"),
    )
    return bootstrap.contracts().record_training_run(request)


def left_out(counts: dict[str, Any]) -> dict[str, int]:
    """What an organisation offered and the run did not use, by reason: the gate's refusals (hash_mismatch,
    consent_revoked...) and admitted records it could not train on (no_label, missing_features), as its last round
    counted them."""
    return {reason: int(n) for part in ("refused", "skipped") for reason, n in counts.get(part, {}).items() if n}


def _lineage_document(lineage: Any) -> dict[str, Any]:
    """The lineage as the model registry keeps it beside the model (for its card)."""
    document = {name: getattr(lineage, name) for name in lineage.__dataclass_fields__}
    document["organisations"] = [{**o.__dict__, "left_out": dict(o.left_out)} for o in lineage.organisations]
    document["round_aggregates"] = list(lineage.round_aggregates)
    document["hyperparameters"] = dict(lineage.hyperparameters)
    document["metrics"] = dict(lineage.metrics)
    return document
