import functools
import logging

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready
from kombu import Queue

from config.heap import freeze_long_lived
from encoders.threads import note_concurrency
from workers.heartbeat import Heartbeat

# No default here: every Django process imports this module, and whoever starts one names its
# settings (manage.py and `make run`: local; the image: production; tests: test). A bare `celery -A
# config` without DJANGO_SETTINGS_MODULE stops with Django's "settings are not configured".

app = Celery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `encode` holds GPU work (one process per device, model cached); `default` holds scans,
# thumbnails and housekeeping so they never wait behind a long encode.
# `query` holds search-query encoding, answered in milliseconds by a worker with the model warm.
app.conf.task_queues = (Queue("default"), Queue("encode"), Queue("query"))
app.autodiscover_tasks()

@functools.cache
def _query_task_prefixes() -> tuple[str, ...]:
    """The task names routed to the `query` queue (CELERY_TASK_ROUTES: `search.tasks.query_*`, …)."""
    return tuple(pattern.rstrip("*") for pattern, route in app.conf.task_routes.items() if route.get("queue") == "query")


class QueryTasksUnlogged(logging.Filter):
    """Drops Celery's per-task INFO lines (received; succeeded, with the result's repr) for the tasks
    of the `query` queue: hundreds a second under load, each with a vector in it. Warnings and errors
    still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not isinstance(record.args, dict):
            return True
        return not str(record.args.get("name", "")).startswith(_query_task_prefixes())


for _logger in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_logger).addFilter(QueryTasksUnlogged())

# Health reads worker liveness from keys the workers write themselves (workers/heartbeat.py).
app.steps["consumer"].add(Heartbeat)


@worker_init.connect
def _note_concurrency(sender, **kwargs):
    """Torch's intra-op threads follow the worker's concurrency (encoders/threads.py)."""
    note_concurrency(sender.concurrency)


@worker_ready.connect
@worker_process_init.connect
def _freeze_long_lived(**kwargs):
    """Out of the garbage collector's walks: what a worker (or a prefork child) loaded to start."""
    freeze_long_lived()
