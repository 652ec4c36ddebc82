"""Celery tasks of the oversight app (queue "custodian"): the misuse detector's scoring run."""

from datetime import date
from typing import Any

from celery import shared_task

from health_platform import bootstrap
from ledger import LedgerUnavailable
from oversight import services


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=1740, time_limit=1800)
def misuse_score_run(self: Any, until: str | None = None, days: int = 2) -> dict[str, Any]:
    """Score the access log (yesterday and today so far by default); a ledger that does not answer is tried again,
    growing the wait, until it does (nothing is scored meanwhile: the detector reads the ledger, never the mirror)."""

    try:
        run = services.misuse_score(until=date.fromisoformat(until) if until else None, days=days)
    except LedgerUnavailable as outage:
        raise self.retry(exc=outage, countdown=bootstrap.ledger_retry_countdown(retries=self.request.retries)) from None
    return {
        "scored_from": str(run.scored_from),
        "scored_until": str(run.scored_until),
        "events": run.events,
        "alerts": len(run.alerts),
        "detector": run.detector.version if run.detector else None,
        "skipped": run.skipped,
    }
