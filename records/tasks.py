"""Celery tasks of the records app (custodian queue)."""

import structlog
from celery import shared_task

from ledger import LedgerUnavailable, TransactionConflict
from records.anchoring import ANCHOR_BATCH_LIMIT, record_versions_anchor_pending

log = structlog.get_logger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(LedgerUnavailable, TransactionConflict),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=20,
    soft_time_limit=240,
    time_limit=300,
)
def anchor_pending_records(self, limit: int = ANCHOR_BATCH_LIMIT) -> int:
    """Anchor pending record versions on the ledger; requeue itself while more are waiting.

    Safe to deliver twice: the service skips anchored versions and reconciles ones the ledger
    already holds. Retries (with backoff) only while the ledger is unreachable or conflicting.
    """
    run = record_versions_anchor_pending(limit=limit)
    if run.remaining and run.anchored:
        self.apply_async(kwargs={"limit": limit})
    return run.anchored
