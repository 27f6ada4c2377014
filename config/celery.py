import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `encode` holds GPU work (one process per device, model cached); `default` holds scans,
# thumbnails and housekeeping so they never wait behind a long encode.
app.conf.task_queues = (Queue("default"), Queue("encode"))
app.autodiscover_tasks()
