"""The compute worker's Celery application: no Django, no database settings, no keys.

    celery -A analytics.compute_app worker --queues compute

It needs the broker (CELERY_BROKER_URL; the filesystem default reads CELERY_FILESYSTEM_BROKER_DIR)
and the blob folder (ANALYTICS_BLOB_DIR), both defaulting under HEALTH_PLATFORM_VAR_DIR as in the
Django settings. After scoring, the chain it was given sends the collect step back to the custodian
queue; it never needs the custodian's code.
"""

import os
from pathlib import Path

from celery import Celery

from analytics.blobs import FileSystemBlobStore
from analytics.compute import SCORE_TASK, score_batch
from analytics.he import TenSEALEngine
from health_platform.filesystem_broker import use_whole_message_transport

_var = Path(os.environ.get("HEALTH_PLATFORM_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
_broker_url = os.environ.get("CELERY_BROKER_URL", "filesystem://")

use_whole_message_transport()
app = Celery("health_platform_compute", broker=_broker_url)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # the filesystem broker's is raised below (see the Django settings)
    task_default_queue="compute",
    worker_hijack_root_logger=True,
)
if _broker_url.startswith("filesystem://"):
    _folder = Path(os.environ.get("CELERY_FILESYSTEM_BROKER_DIR", _var / "broker"))
    app.conf.broker_transport_options = {
        "data_folder_in": str(_folder / "queue"),
        "data_folder_out": str(_folder / "queue"),
        "processed_folder": str(_folder / "processed"),
        "control_folder": str(_folder / "control"),
        "store_processed": False,
        # How often an idle worker looks for messages: the latency of each step of a pipeline.
        "polling_interval": float(os.environ.get("CELERY_FILESYSTEM_POLLING_INTERVAL", "0.1")),
    }
    app.conf.worker_prefetch_multiplier = int(os.environ.get("CELERY_FILESYSTEM_PREFETCH_MULTIPLIER", "16"))


@app.task(name=SCORE_TASK, acks_late=True, soft_time_limit=540, time_limit=600)
def score(compute_context_key: str, column_keys: list[list[str]], weights: list[float], bias: float) -> list[str]:
    """Score one batch; the result (score ciphertext keys) goes to the next task in the chain."""
    blobs = FileSystemBlobStore(os.environ.get("ANALYTICS_BLOB_DIR", _var / "blobs"))
    return score_batch(
        engine=TenSEALEngine(),
        blobs=blobs,
        compute_context_key=compute_context_key,
        column_keys=column_keys,
        weights=weights,
        bias=bias,
    )
