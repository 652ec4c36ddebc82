"""Celery tasks of training runs and of the trained models' standing. A task takes ids, re-reads state and calls
the service; delivered twice, the second finds the work done and does nothing."""

from celery import shared_task

from training import retirement, rounds


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def training_run_execute(run_id: str) -> None:
    rounds.training_run_execute(run_id=run_id)


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def trained_models_standing_evaluate(consent_ids: list[str] | None = None, record_ids: list[str] | None = None) -> None:
    """Count again the models trained under these consents or on these records; retire those past the threshold."""
    retirement.trained_models_standing_evaluate(consent_ids=consent_ids or [], record_ids=record_ids or [])


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def trained_models_standing_sweep() -> None:
    """The beat's sweep: every trained model counted again, every retirement the ledger has not taken sent again."""
    retirement.trained_models_standing_evaluate()
