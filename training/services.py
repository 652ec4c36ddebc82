"""Writes: training runs (issue 18). A model steward asks for a run (training_run_request); a worker runs it
(training.tasks, training.rounds.training_run_execute): the federated rounds over Flower, then ONE ledger
transaction with the lineage, then the trained model into the platform's model registry, beside the catalogue's
models.

Keys: a run's CKKS keys are made for it. The secret context is sealed in the key vault as an analysis keeps its
requester's (analytics.keys) and opened by the steward's side only (training.steward); the organisations get the
public context, the aggregator the parameters-only one.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction

from analytics.selectors import LinearModel, declared_model_of_family
from analytics.services import blob_store, homomorphic_engine, secret_context_seal
from chaincode.vocabulary import is_training_purpose
from health_platform.errors import PermissionDenied, ValidationFailed
from training import maths, privacy, tasks
from training.access import user_may_request_training
from training.models import TrainingRun
from training.participation import participation_keep
from training.retirement import retirement_due as retirement_due
from training.retirement import trained_model_retirements_send as trained_model_retirements_send
from training.retirement import trained_models_standing_evaluate as trained_models_standing_evaluate
from training.rounds import training_run_execute as training_run_execute
from training.rounds import vault_id
from training.selectors import training_candidates_offered
from training.terms import MAX_RIDGE, MAX_ROUNDS, MAX_TARGET_BOUND, MAX_VALIDATION_FRACTION, finite_number

log = structlog.get_logger(__name__)

DEFAULT_ROUNDS = {maths.LINEAR: 1, maths.LOGISTIC: 8}  # sufficient statistics need one round; Newton a few
DEFAULT_RIDGE = {maths.LINEAR: 0.0, maths.LOGISTIC: 1.0}
DEFAULT_VALIDATION_FRACTION = 0.2
DP_MINIMUM_RIDGE = 1.0  # the noisy (PSD-projected) Gram matrix or Hessian plus this is invertible


def training_run_request(
    *,
    steward: Any,
    family: str,
    organisations: Mapping[str, Sequence[int]] | None = None,
    rounds: int | None = None,
    ridge: float | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    dp_epsilon: float | None = None,
    dp_delta: float | None = None,
    dp_target_bound: float | None = None,
) -> TrainingRun:
    """Ask for a run training `family`'s model over the record versions of each organisation ("org:<slug>" -> the
    candidate version ids its custodian offers; the gate decides which are used). Queued; a worker runs it.

    Differential privacy, optional: `dp_epsilon` in (0, 100] and `dp_delta` in (0, 1e-3], both or neither
    (training.privacy); a linear family also needs `dp_target_bound`, the B its records' targets are clipped to
    ([−B, B]): without it one record's contribution has no bound.

    Without `organisations`: over the records the organisations' custodians offer for `family`
    (training.selectors.training_candidates_offered), which is what the steward's page and API request, and with
    every peer instance of TRAINING_FEDERATION_PEERS invited to offer its own organisation's (training.invitations).
    Nothing offered and no peer (no live training consent to any organisation) is ValidationFailed
    no_records_offered, and nothing is stored. The terms are checked before the offer is read: they are the
    steward's to correct."""
    if not user_may_request_training(steward):
        raise PermissionDenied("Only a model steward can request a training run.")
    spec = _declared(family)
    differential_privacy = _differential_privacy_terms(spec.kind, dp_epsilon, dp_delta, dp_target_bound)
    if ridge is None and differential_privacy and spec.kind == maths.LINEAR:
        ridge = DP_MINIMUM_RIDGE  # under differential privacy the noisy Gram matrix needs a ridge to stay invertible
    spec, rounds, ridge = _terms_checked(family, rounds, ridge, validation_fraction)
    if differential_privacy and not ridge >= DP_MINIMUM_RIDGE:
        raise ValidationFailed(
            f"Under differential privacy the ridge must be at least {DP_MINIMUM_RIDGE:g}.",
            code="dp_ridge_too_small",
            detail={"field": "ridge"},
        )
    invited: list[str] = []
    if organisations is None:
        organisations = training_candidates_offered(family=family)
        invited = sorted(settings.TRAINING_FEDERATION_PEERS)
        if not organisations and not invited:
            raise ValidationFailed(
                "No organisation offers a record for this model family: no patient holds a live training consent.",
                code="no_records_offered",
                detail={"field": "family"},
            )
    if not (organisations or invited) or any(not str(o).startswith("org:") for o in organisations):
        raise ValidationFailed("Name the organisations as org:<slug>.", code="invalid_organisations")
    engine, blobs = homomorphic_engine(), blob_store()
    keys = engine.keygen_for_sums()
    with transaction.atomic():
        run = TrainingRun(
            steward=steward,
            model_family=family,
            kind=spec.kind,
            hyperparameters={
                "ridge": float(ridge),
                "validation_fraction": float(validation_fraction),
                "feature_scaling": "documented-range",
                "method": "sufficient-statistics" if spec.kind == maths.LINEAR else "newton",
                **differential_privacy,
            },
            rounds_requested=rounds,
            organisations={organisation: list(ids) for organisation, ids in organisations.items()},
            invited=invited,
            public_context_key=blobs.put(keys.public),
            compute_context_key=blobs.put(keys.compute),
        )
        run.sealed_key_id, run.sealed_secret_context = secret_context_seal(
            request_id=vault_id(run.id), secret=keys.secret
        )
        run.save()
        transaction.on_commit(lambda: _enqueue(run.id))
    log.info("training_run_requested", run_id=str(run.id), family=family, steward_user_id=steward.pk)
    return run


def _declared(family: str) -> LinearModel:
    spec = declared_model_of_family(family=family)
    if spec is None:
        raise ValidationFailed("No model of this family is declared.", code="unknown_model", detail={"field": "family"})
    return spec


def _terms_checked(
    family: str, rounds: object, ridge: object, validation_fraction: object
) -> tuple[LinearModel, int, float]:
    """The family's declared model and the run's rounds and ridge (the kind's defaults where not given), checked."""
    spec = _declared(family)
    rounds = DEFAULT_ROUNDS[spec.kind] if rounds is None else rounds
    ridge = DEFAULT_RIDGE[spec.kind] if ridge is None else ridge
    training_terms_check(kind=spec.kind, rounds=rounds, ridge=ridge, validation_fraction=validation_fraction)
    return spec, rounds, float(ridge)  # type: ignore[arg-type,return-value]


def training_terms_check(*, kind: str, rounds: object, ridge: object, validation_fraction: object) -> None:
    """A run's terms, whatever their source (API, form, shell): rounds a whole number 1..MAX_ROUNDS (one for a linear
    model), ridge a finite number 0..MAX_RIDGE, validation_fraction a finite number 0..MAX_VALIDATION_FRACTION.
    Booleans are refused although Python counts them as numbers (True is not one round); so are strings."""

    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ROUNDS:
        raise ValidationFailed(
            f"rounds must be a whole number from 1 to {MAX_ROUNDS}.", code="invalid_rounds", detail={"field": "rounds"}
        )
    if kind == maths.LINEAR and rounds != 1:
        raise ValidationFailed("A linear model trains in one round.", code="invalid_rounds", detail={"field": "rounds"})
    if not finite_number(ridge) or not 0 <= float(ridge) <= MAX_RIDGE:  # type: ignore[arg-type]
        raise ValidationFailed(
            f"ridge must be a number from 0 to {MAX_RIDGE:g}.", code="invalid_ridge", detail={"field": "ridge"}
        )
    if (
        not finite_number(validation_fraction) or not 0 <= float(validation_fraction) <= MAX_VALIDATION_FRACTION  # type: ignore[arg-type]
    ):
        raise ValidationFailed(
            f"validation_fraction must be a number from 0 to {MAX_VALIDATION_FRACTION}.",
            code="invalid_validation_fraction",
            detail={"field": "validation_fraction"},
        )


def _real(value: object) -> float | None:
    """`value` as a float if it is a finite real number (finite_number), else None."""
    return float(value) if finite_number(value) else None  # type: ignore[arg-type]


def _differential_privacy_terms(
    kind: str, epsilon: object, delta: object, target_bound: object
) -> dict[str, float | str]:
    """The run's differential-privacy hyperparameters (none without a budget), each term checked."""
    if epsilon is None and delta is None:
        if target_bound is not None:
            raise ValidationFailed(
                "A target bound is only for a run with differential privacy.",
                code="invalid_dp_target_bound",
                detail={"field": "dp_target_bound"},
            )
        return {}
    if epsilon is None or delta is None:
        raise ValidationFailed(
            "Give both epsilon and delta, or neither.",
            code="dp_budget_incomplete",
            detail={"field": "dp_delta" if delta is None else "dp_epsilon"},
        )
    checked_epsilon, checked_delta = _real(epsilon), _real(delta)
    if checked_epsilon is None or not 0 < checked_epsilon <= privacy.MAX_EPSILON:
        raise ValidationFailed(
            f"epsilon must be a number above 0 and at most {privacy.MAX_EPSILON:g}.",
            code="invalid_dp_epsilon",
            detail={"field": "dp_epsilon"},
        )
    if checked_delta is None or not 0 < checked_delta <= privacy.MAX_DELTA:
        raise ValidationFailed(
            f"delta must be a number above 0 and at most {privacy.MAX_DELTA:g}.",
            code="invalid_dp_delta",
            detail={"field": "dp_delta"},
        )
    terms: dict[str, float | str] = {
        "dp_mechanism": privacy.MECHANISM,
        "dp_epsilon": checked_epsilon,
        "dp_delta": checked_delta,
    }
    if kind == maths.LINEAR:
        bound = _real(target_bound)
        if target_bound is None:
            raise ValidationFailed(
                "A linear model under differential privacy needs the bound its targets are clipped to.",
                code="dp_target_bound_required",
                detail={"field": "dp_target_bound"},
            )
        if bound is None or not 0 < bound <= MAX_TARGET_BOUND:
            raise ValidationFailed(
                f"The target bound must be a number above 0 and at most {MAX_TARGET_BOUND:g}.",
                code="invalid_dp_target_bound",
                detail={"field": "dp_target_bound"},
            )
        terms["dp_target_bound"] = bound
    elif target_bound is not None:
        raise ValidationFailed(
            "A target bound is only for a linear model.",
            code="invalid_dp_target_bound",
            detail={"field": "dp_target_bound"},
        )
    return terms


def training_participation_accept(*, steward_organisation: str, invitation: object) -> tuple[Any, bool]:
    """An invitation from the peer instance `steward_organisation` (its signature checked by the caller) to take part
    in its run: kept (training.participation) and, when new, queued for this instance's custodian worker once it is
    committed. (The participation, whether it is new.)"""
    participation, created = participation_keep(steward_organisation=steward_organisation, invitation=invitation)
    if created:
        transaction.on_commit(lambda: tasks.training_participation_run.delay(participation.pk))
    return participation, created


def _enqueue(run_id: object) -> None:
    tasks.training_run_execute.delay(str(run_id))


def consent_revoked_follow(*, consent_id: str, purposes: list[str]) -> None:
    """A consent was revoked (consent.services.consent_revoked): if it was for training, the models trained under
    it are counted again by a task, once the revocation's transaction has committed."""
    if any(is_training_purpose(purpose) for purpose in purposes):
        transaction.on_commit(lambda: tasks.trained_models_standing_evaluate.delay(consent_ids=[consent_id]))


def records_erased_follow(*, record_ids: list[str]) -> None:
    """A patient's records were erased (records.services.patient_erasure_destroy): the models trained on them are
    counted again by a task, once the erasure's transaction has committed."""
    if record_ids:
        transaction.on_commit(lambda: tasks.trained_models_standing_evaluate.delay(record_ids=list(record_ids)))
