"""Celery tasks of the audit app (queue "custodian"): each takes ids and runs a job."""

from celery import shared_task

from audit import exports


@shared_task(acks_late=True, soft_time_limit=1740, time_limit=1800)
def audit_export_run(export_id: str) -> None:
    exports.audit_export_run(export_id=export_id)
