"""Celery tasks of the custodian side (queue "custodian"). Each takes ids, re-reads state and calls
a service; each is safe to deliver twice. The compute step runs on the "compute" queue."""

import gc
import time
from datetime import timedelta
from uuid import UUID

import structlog
from celery import chain, shared_task
from celery.canvas import Signature
from celery.signals import worker_process_init
from django.conf import settings

from analytics import engines, pipeline
from analytics.compute import SCORE_TASK, score_batch
from health_platform import bootstrap
from health_platform.celery import app
from health_platform.errors import ApplicationError
from ledger import ContractRejected, LedgerUnavailable

log = structlog.get_logger(__name__)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def analysis_start(request_id: str) -> None:
    for batch_id in pipeline.analysis_start(request_id=request_id):
        analysis_batch_gate.delay(batch_id)


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=540, time_limit=600)
def analysis_batch_gate(self, batch_id: int, resend: bool = False) -> None:
    """Gate, log and encrypt one batch, then send it to the compute queue (once: see compute_order_claim;
    `resend` is the stalled-work sweep's, for an order or a result that was lost).

    The ledger not answering is retried with exponential backoff (nothing is computed meanwhile) until the
    request's deadline (ANALYTICS_REQUEST_DEADLINE_SECONDS); then the request fails closed with code
    ledger_unavailable.
    """
    try:
        order = pipeline.analysis_batch_advance(batch_id=batch_id, claimant=self.request.id, force=resend)
    except pipeline.LedgerNotAnswering as error:
        countdown = bootstrap.ledger_retry_countdown(retries=self.request.retries)
        if not pipeline.analysis_may_wait(batch_id=batch_id, seconds=countdown):
            _fail(batch_id, "ledger_unavailable")
            return
        log.warning("analysis_batch_ledger_retry", batch_id=batch_id, step=str(error), retry=self.request.retries + 1)
        raise self.retry(exc=error, countdown=countdown) from None
    except ContractRejected as error:
        _fail(batch_id, pipeline.contract_rejection_code(error))
        return
    except ApplicationError as error:  # e.g. model_hash_mismatch: retrying cannot help
        _fail(batch_id, error.code)
        return
    if order is not None and order.score_keys is not None:  # the custodian scored it: collected here, now
        analysis_batch_collect(order.score_keys, order.batch_id)
        return
    if order is None or not pipeline.compute_order_claim(batch_id=batch_id, claimant=self.request.id, force=resend):
        return
    try:
        _send_patiently(
            chain(
                app.signature(
                    SCORE_TASK,
                    args=(order.compute_context_key, order.column_keys, order.weights, order.bias),
                    queue="compute",
                ),
                analysis_batch_collect.s(order.batch_id).set(queue="custodian"),
            ),
            batch_id=batch_id,
        )
    except Exception:
        pipeline.compute_order_release(batch_id=batch_id)
        raise


PUBLISH_PATIENCE_SECONDS = 300


def _send_patiently(signature: Signature, *, batch_id: int) -> None:
    """Send the compute order, waiting out a broker restart (up to PUBLISH_PATIENCE_SECONDS).

    The batch is already stored as encrypted; if the order were lost, only the stalled-work sweep
    (resume_stalled_analyses) would send it again, minutes later. The first attempt uses the pooled
    producer; retries use a fresh connection each, because a pooled one that lived through a Redis
    restart can fail in ways kombu does not retry (AttributeError in the Redis transport).
    """
    deadline = time.monotonic() + PUBLISH_PATIENCE_SECONDS
    try:
        signature.apply_async()  # the usual path: the pooled producer
        return
    except Exception as error:  # kombu raises OperationalError, ConnectionError or worse mid-restart
        log.warning("analysis_compute_order_send_retry", batch_id=batch_id, error=type(error).__name__)
    while True:
        time.sleep(1)
        try:
            with app.connection_for_write() as connection, connection.Producer() as producer:
                signature.apply_async(producer=producer)
            return
        except Exception as error:  # kombu raises OperationalError, ConnectionError or worse mid-restart
            if time.monotonic() > deadline:
                raise
            log.warning("analysis_compute_order_send_retry", batch_id=batch_id, error=type(error).__name__)


def _fail(batch_id: int, code: str) -> None:
    """Fail the batch's request closed, then log what became of the batches whose access was logged."""
    pipeline.analysis_fail(batch_id=batch_id, code=code)
    request_id = pipeline.request_of_batch(batch_id=batch_id)
    if request_id is not None:
        analysis_outcomes_log.delay(str(request_id))


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def analysis_batch_collect(score_keys: list[str], batch_id: int) -> None:
    """Collect a batch's scores; once the request's last batch is in, log its outcomes and mirror its accesses."""
    if pipeline.analysis_batch_collect(batch_id=batch_id, score_keys=score_keys):
        request_id = pipeline.request_of_batch(batch_id=batch_id)
        if request_id is not None:
            analysis_outcomes_log.delay(str(request_id))


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def analysis_outcomes_log(request_id: str) -> None:
    """Log the outcome of a request's batches on the ledger. Not retried here: when the ledger does not answer,
    what was not logged stays to log, and the stalled-work sweep sends this again a minute later."""
    try:
        pipeline.analysis_outcomes_log(request_id=UUID(request_id))
    except LedgerUnavailable:
        log.warning("analysis_outcomes_deferred", request_id=request_id)


@app.task(name=SCORE_TASK, acks_late=True, soft_time_limit=540, time_limit=600)
def score(compute_context_key: str, column_keys: list[list[str]], weights: list[float], bias: float) -> list[str]:
    """The compute step registered in the custodian app too, for eager runs and single-worker setups.

    Same code as the compute worker's (analytics.compute.score_batch): it touches no database or key.
    """
    return score_batch(
        engine=engines.homomorphic_engine(),
        blobs=engines.blob_store(),
        compute_context_key=compute_context_key,
        column_keys=column_keys,
        weights=weights,
        bias=bias,
    )


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def resume_stalled_analyses() -> None:
    """Beat: send again the work whose message was lost (see pipeline.analyses_stalled)."""
    requests, batches = pipeline.analyses_stalled(stalled_after=timedelta(seconds=settings.ANALYTICS_STALL_SECONDS))
    for request_id in requests:
        analysis_start.delay(request_id)
    for batch_id in batches:
        analysis_batch_gate.delay(batch_id, resend=True)
    for request_id in pipeline.analyses_with_outcomes_to_log():
        analysis_outcomes_log.delay(request_id)


@worker_process_init.connect
def worker_process_ready(**_: object) -> None:
    """Make a new custodian worker process ready before it takes its first task, so that the first analysis after
    a start runs as the next ones do: its database connection and ledger client opened, its CKKS engine made, and
    a collection run, which writes to every object the process inherited at the fork and so copies those pages now
    (with the three others: a fifth of the first analysis's time, measured, when left to it). Nothing here is
    needed: a database or ledger that does not answer yet is met, and retried, by the first task, as always.

    Then what is alive (the modules, Django, TenSEAL: hundreds of thousands of objects that live as long as the
    process) is frozen out of the cyclic collector (gc.freeze): a batch allocates enough to set off full
    collections, each of which walked all of it, a third of the gate's time (measured: the gate's read of 5,000
    versions 0.26 s, 0.18 s frozen; its ledger call 0.21 s, 0.13 s). What a task allocates is collected as before."""
    from django.db import connection

    engines.homomorphic_engine()
    try:
        connection.ensure_connection()
        bootstrap.contracts().height()
    except Exception as error:  # the process must start whatever is down; its tasks say what is
        log.warning("worker_start_not_ready", error=type(error).__name__)
    gc.collect()
    gc.freeze()
