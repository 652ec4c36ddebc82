"""The Celery application. Custodian work and compute work run on separate queues."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")

app = Celery("health_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
