"""The model registry: which diagnostic models the platform runs, each anchored on the ledger by its
weights hash. A registered model is run only with the weights whose hash it was registered with."""

import structlog

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


def model_spec(model: DiagnosticModel) -> LinearModel:
    """The weights of a registered model, refusing any whose hash differs from the registered one."""
    for spec in all_models():
        if (spec.name, spec.version) == (model.name, model.version):
            if spec.sha256 != model.sha256:
                raise ValidationFailed(
                    "The model's weights differ from the anchored ones.",
                    code="model_hash_mismatch",
                    detail={"model": str(model)},
                )
            return spec
    raise ValidationFailed("The model is not in the registry.", code="unknown_model", detail={"model": str(model)})
