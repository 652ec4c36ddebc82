"""Celery tasks of the audit app (queue "custodian"): each takes ids and runs a job."""

from typing import Any

from celery import shared_task

from audit import exports
from health_platform import bootstrap


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=1740, time_limit=1800)
def audit_export_run(self: Any, export_id: str) -> None:
    """Write, verify and log an export; the ledger not answering is tried again with a growing wait (capped),
    until the export's deadline (see exports.audit_export_run)."""
    try:
        exports.audit_export_run(export_id=export_id)
    except exports.ExportDeferred as deferred:
        raise self.retry(
            exc=deferred, countdown=bootstrap.ledger_retry_countdown(retries=self.request.retries)
        ) from None
