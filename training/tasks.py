"""Celery tasks of training runs. A task takes the run's id, re-reads it and calls the service; delivered twice, the
second finds the run running or finished and does nothing."""

from celery import shared_task

from training import rounds


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def training_run_execute(run_id: str) -> None:
    rounds.training_run_execute(run_id=run_id)
