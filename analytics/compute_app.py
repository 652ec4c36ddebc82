"""The compute worker's Celery application: no Django, no database settings, no keys.

    celery -A analytics.compute_app worker --queues compute

It needs the broker and the blob folder (ANALYTICS_BLOB_DIR), which it reads as the custodian's app does
(health_platform.celery_config: the environment, then the project's .env, of which it takes those
variables only). After scoring, the chain it was given sends the collect step back to the custodian
queue; it never needs the custodian's code.
"""

import gc

from celery import Celery
from celery.signals import worker_process_init

from analytics.blobs import FileSystemBlobStore
from analytics.compute import SCORE_TASK, score_batch
from analytics.he import TenSEALEngine
from health_platform.celery_config import blob_dir, celery_config, worker_variables
from health_platform.filesystem_broker import use_platform_transports

_variables = worker_variables()
_blob_dir = blob_dir(_variables)

use_platform_transports()
app = Celery("health_platform_compute")
app.config_from_object(celery_config(queue="compute", variables=_variables), namespace="CELERY")


_engine: TenSEALEngine | None = None


def _engine_of_this_process() -> TenSEALEngine:
    """One engine per worker process, made there (never in the parent before the fork): it keeps the
    parameters-only contexts it last read, which every batch of a request scores with."""
    global _engine
    if _engine is None:
        _engine = TenSEALEngine()
    return _engine


@worker_process_init.connect
def _ready(**_: object) -> None:
    """The engine made, and the pages inherited at the fork copied (a collection writes to every object), before the
    first task: the first batch after a start costs what the next ones do. What lives then is frozen out of the
    cyclic collector, as in the custodian (analytics.tasks.worker_process_ready)."""
    gc.collect()
    _engine_of_this_process()
    gc.freeze()


@app.task(name=SCORE_TASK, acks_late=True, soft_time_limit=540, time_limit=600)
def score(compute_context_key: str, column_keys: list[list[str]], weights: list[float], bias: float) -> list[str]:
    """Score one batch; the result (score ciphertext keys) goes to the next task in the chain."""
    return score_batch(
        engine=_engine_of_this_process(),
        blobs=FileSystemBlobStore(_blob_dir),
        compute_context_key=compute_context_key,
        column_keys=column_keys,
        weights=weights,
        bias=bias,
    )
