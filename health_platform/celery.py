"""The custodian's Celery application (gate, log, encrypt, the sweeps). Custodian work and compute work
run on separate queues; both apps take their configuration from health_platform.celery_config."""

import os

from celery import Celery

from health_platform.celery_config import celery_config
from health_platform.filesystem_broker import use_platform_transports

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")

use_platform_transports()
app = Celery("health_platform")
app.config_from_object(celery_config(queue="custodian"), namespace="CELERY")
app.autodiscover_tasks()
