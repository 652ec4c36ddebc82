"""The Celery application. Custodian work and compute work run on separate queues."""

import os

from celery import Celery

from health_platform.filesystem_broker import use_whole_message_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")

use_whole_message_transport()
app = Celery("health_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
