"""The model registry: which diagnostic models the platform runs, each anchored on the ledger by its
weights hash. A registered model is run only with the weights whose hash it was registered with."""

from typing import Any

import structlog
from django.utils import timezone

from analytics.diagnostic_models import LinearModel, all_models
from analytics.models import DiagnosticModel
from health_platform import bootstrap
from health_platform.errors import ValidationFailed

log = structlog.get_logger(__name__)


def diagnostic_models_register() -> list[DiagnosticModel]:
    """Anchor each declared model's weights hash on the ledger and register it (idempotent)."""
    contracts = bootstrap.contracts()
    registered = []
    for spec in all_models():
        anchor = contracts.anchor_model(name=spec.name, version=spec.version, sha256=spec.sha256)
        row, _ = DiagnosticModel.objects.update_or_create(
            name=spec.name,
            version=spec.version,
            defaults={"sha256": spec.sha256, "anchor_tx_id": anchor.tx_id, "anchor_block": anchor.block_number},
        )
        registered.append(row)
        log.info("diagnostic_model_registered", model=spec.model_id, sha256=spec.sha256, tx_id=anchor.tx_id)
    return registered


def trained_model_register(*, spec: LinearModel, lineage: dict[str, Any]) -> DiagnosticModel:
    """Register a model trained on the platform (issue 18) beside the catalogue's: its weights hash anchored on the
    ledger as theirs are, its weights document and its lineage (as the training run wrote it) kept with it, so
    that analyses run it and its card shows where it came from. Idempotent for the same weights."""
    anchor = bootstrap.contracts().anchor_model(name=spec.name, version=spec.version, sha256=spec.sha256)
    row, _ = DiagnosticModel.objects.update_or_create(
        name=spec.name,
        version=spec.version,
        defaults={
            "sha256": spec.sha256,
            "anchor_tx_id": anchor.tx_id,
            "anchor_block": anchor.block_number,
            "weights_document": spec.to_document(),
            "lineage": lineage,
        },
    )
    log.info("trained_model_registered", model=spec.model_id, sha256=spec.sha256, tx_id=anchor.tx_id)
    return row


def model_spec(model: DiagnosticModel) -> LinearModel:
    """The weights of a registered model, refusing any whose hash differs from the registered one: the catalogue's,
    or the document kept with a model trained on the platform."""
    if model.weights_document:
        trained = LinearModel.from_document(model.weights_document)
        if trained.sha256 != model.sha256:
            raise _hash_mismatch(model)
        return trained
    for spec in all_models():
        if (spec.name, spec.version) == (model.name, model.version):
            if spec.sha256 != model.sha256:
                raise _hash_mismatch(model)
            return spec
    raise ValidationFailed("The model is not in the registry.", code="unknown_model", detail={"model": str(model)})


def _hash_mismatch(model: DiagnosticModel) -> ValidationFailed:
    return ValidationFailed(
        "The model's weights differ from the anchored ones.", code="model_hash_mismatch", detail={"model": str(model)}
    )


def trained_model_since_trained_record(*, model: DiagnosticModel, since_trained: dict[str, Any]) -> None:
    """Keep what has become of a trained model's training set since (training.standing: revoked consents, erased
    records), for its card, the model list and the API."""
    DiagnosticModel.objects.filter(pk=model.pk).update(since_trained=since_trained)


def trained_model_retire(*, model: DiagnosticModel, reason: str, revocations: int) -> bool:
    """Retire a model from new analyses here, at once, before the ledger hears of it: the conservative decision
    while the ledger may be away. Once: True only for the call that retired it (a retired model keeps the reason and
    count it was retired with, which are what RetireModel then writes)."""
    retired = DiagnosticModel.objects.filter(pk=model.pk, retired_at=None).update(
        retired_at=timezone.now(), retirement={"reason": reason, "revocations": revocations, "tx_id": ""}
    )
    if retired:
        log.warning("diagnostic_model_retired", model=str(model), reason=reason, revocations=revocations)
    return bool(retired)


def trained_model_retirement_landed(*, model: DiagnosticModel, tx_id: str, block_number: int | None) -> None:
    """The ledger holds the model's retirement: where."""
    retirement = {**model.retirement, "tx_id": tx_id, "block_number": block_number}
    DiagnosticModel.objects.filter(pk=model.pk).update(retirement=retirement)
    log.info("diagnostic_model_retirement_on_ledger", model=str(model), tx_id=tx_id)


def trained_models_retirement_pending() -> list[DiagnosticModel]:
    """Models retired here whose retirement the ledger does not hold yet."""
    return [m for m in DiagnosticModel.objects.exclude(retired_at=None) if not m.retirement.get("tx_id")]
