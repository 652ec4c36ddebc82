"""Celery tasks of training runs and of the trained models' standing. A task takes ids, re-reads state and calls
the service; delivered twice, the second finds the work done and does nothing."""

from datetime import timedelta

import structlog
from celery import shared_task
from django.conf import settings

from training import participation, retirement, rounds

log = structlog.get_logger(__name__)

RUN_TIME_LIMIT_SECONDS = 3600


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=RUN_TIME_LIMIT_SECONDS - 300,
    time_limit=RUN_TIME_LIMIT_SECONDS,
)
def training_run_execute(self, run_id: str) -> None:
    """Run it; a run the ledger did not answer is back in the queue: tried again after the backoff (the deadline is
    the service's to judge)."""
    run = rounds.training_run_execute(run_id=run_id)
    if run is not None and run.status == rounds.TrainingStatus.QUEUED:
        raise self.retry(countdown=rounds.ledger_wait_seconds(run))


@shared_task(acks_late=True, soft_time_limit=RUN_TIME_LIMIT_SECONDS - 300, time_limit=RUN_TIME_LIMIT_SECONDS)
def training_participation_run(participation_id: int) -> None:
    """Take part, with this instance's organisation, in a run another instance's steward federates."""
    participation.participation_run(participation_id=participation_id)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def resume_stalled_training_runs() -> None:
    """Beat: send again a queued run whose message was lost, and put back in the queue a run whose worker died
    (taken longer ago than the task's hard time limit: no worker can still hold it)."""
    stalled = rounds.training_runs_stalled(
        queued_for=timedelta(seconds=settings.ANALYTICS_STALL_SECONDS),
        running_for=timedelta(seconds=RUN_TIME_LIMIT_SECONDS + 60),
    )
    for run_id in stalled:
        training_run_execute.delay(run_id)


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def trained_models_standing_evaluate(consent_ids: list[str] | None = None, record_ids: list[str] | None = None) -> None:
    """Count again the models trained under these consents or on these records; retire those past the threshold."""
    retirement.trained_models_standing_evaluate(consent_ids=consent_ids or [], record_ids=record_ids or [])


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def trained_models_standing_sweep() -> None:
    """The beat's sweep: every trained model counted again, every retirement the ledger has not taken sent again, the
    lineage of this instance's parts in other instances' runs looked for on the ledger (their patients' view), and
    the parts no worker will finish closed."""
    retirement.trained_models_standing_evaluate()
    participation.participations_lineage_confirm()
    participation.participations_abandoned_close(older_than=timedelta(seconds=RUN_TIME_LIMIT_SECONDS + 60))
