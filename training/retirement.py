"""Models that answer to revocation (issue 18): a trained model counts the consents of its lineage since withdrawn
(training.selectors.trained_model_since_trained) and, past the policy's threshold, is retired from new analyses and
on the ledger (RetireModel), until a new run of its family, which the gate keeps from the revoked records, serves.

Fail closed, then heal: the retirement is decided here first (analytics.services.trained_model_retire: no new
analysis uses the model from then), then sent to the ledger. While the ledger does not answer the retirement stays
pending; the beat's sweep (trained_models_standing_sweep, every TRAINING_STANDING_SWEEP_SECONDS) sends it again
until it lands. Everything is idempotent: the same consent revoked twice, or a task delivered twice, retires a
model once, with the count it was retired with (RetireModel answers the same retirement again without writing).

Analyses already running are not touched: the model is refused to NEW requests only.

One platform instance per organisation: the consents and erasures of an invited organisation's records are in its
own instance; each count asks it (training.invitations.InvitedOrganisation.standing), and a count it cannot get is
left for the next sweep, the counters unchanged.
"""

from collections.abc import Iterable

import structlog
from django.conf import settings
from django.db.models import Q

from analytics.models import DiagnosticModel
from analytics.selectors import diagnostic_model_get
from analytics.services import (
    trained_model_retire,
    trained_model_retirement_landed,
    trained_model_since_trained_record,
    trained_models_retirement_pending,
)
from health_platform import bootstrap
from ledger import ContractRejected, LedgerUnavailable
from ledger.contracts import ModelStatus
from training.federation import FederationFailed
from training.invitations import invited_organisations
from training.models import TrainingRun, TrainingStatus
from training.selectors import SinceTrained, trained_model_since_trained

log = structlog.get_logger(__name__)

RETIREMENT_REASON = "revocations_threshold"  # chaincode.vocabulary.RETIREMENT_REASONS


def retirement_due(since: SinceTrained) -> bool:
    """The policy: more than TRAINING_RETIREMENT_REVOKED_FRACTION of the lineage's consents withdrawn, or more than
    TRAINING_RETIREMENT_REVOKED_COUNT of them (either None: that test is off)."""
    fraction, count = settings.TRAINING_RETIREMENT_REVOKED_FRACTION, settings.TRAINING_RETIREMENT_REVOKED_COUNT
    withdrawn = since.withdrawn_consents
    return withdrawn > 0 and (
        (fraction is not None and withdrawn > fraction * since.consents) or (count is not None and withdrawn > count)
    )


def trained_models_standing_evaluate(
    *, consent_ids: Iterable[str] | None = None, record_ids: Iterable[str] | None = None
) -> list[DiagnosticModel]:
    """Count again the models whose lineage holds one of `consent_ids` or `record_ids` (every trained model when
    both are None), retire those past the threshold, and send the ledger the retirements it has not taken yet.
    Returns the models retired here (now or before)."""
    runs = TrainingRun.objects.filter(status=TrainingStatus.COMPLETED).exclude(model_version="")
    if consent_ids is not None or record_ids is not None:  # the runs whose training-set index names one of them
        named = Q(entries__consent_id__in=list(consent_ids or ())) | Q(entries__record_id__in=list(record_ids or ()))
        runs = runs.filter(named).distinct()
    for run in runs:
        _evaluate(run)
    return trained_model_retirements_send()


def _evaluate(run: TrainingRun) -> None:
    model = diagnostic_model_get(name=run.model_name, version=run.model_version)
    if model is None:
        return
    try:  # the invited organisations' own consents and erasures, which only their instances hold
        elsewhere = {organisation.organisation: organisation.standing() for organisation in invited_organisations(run)}
    except FederationFailed as error:  # counted again by the next sweep; the counters stay as they were
        log.warning("trained_model_count_deferred", run_id=str(run.pk), code=error.code)
        return
    since = trained_model_since_trained(run=run, elsewhere=elsewhere)
    trained_model_since_trained_record(model=model, since_trained=since.as_dict())
    log.info("trained_model_counted", run_id=str(run.pk), **since.as_dict())  # counts only
    if retirement_due(since):
        trained_model_retire(model=model, reason=RETIREMENT_REASON, revocations=since.withdrawn_consents)


def trained_model_retirements_send() -> list[DiagnosticModel]:
    """Send RetireModel for every model retired here whose retirement the ledger has not taken; a ledger that does
    not answer leaves them pending for the next sweep (logged). Returns the models retired here."""
    for model in trained_models_retirement_pending():
        try:
            status = _retired_on_ledger(model)
        except LedgerUnavailable as error:
            log.warning("trained_model_retirement_deferred", model=str(model), error=type(error).__name__)
            break  # the ledger is away for the others too: the sweep comes back
        trained_model_retirement_landed(model=model, tx_id=status.tx_id or "", block_number=status.block_number)
    return list(DiagnosticModel.objects.exclude(retired_at=None))


def _retired_on_ledger(model: DiagnosticModel) -> ModelStatus:
    contracts = bootstrap.contracts()
    try:
        return contracts.retire_model(
            weights_sha256=model.sha256, reason=model.retirement["reason"], revocations=model.retirement["revocations"]
        )
    except ContractRejected as rejection:
        if rejection.code != "already_retired":
            raise
        # Retired on the ledger already, with another count (by another organisation's platform): that stands.
        return contracts.model_status(model.sha256)
