"""Celery tasks of the audit app (queue "custodian"): each takes ids and calls a service."""

from celery import shared_task

from audit import services


@shared_task(acks_late=True, soft_time_limit=1740, time_limit=1800)
def audit_export_run(export_id: str) -> None:
    services.audit_export_run(export_id=export_id)
