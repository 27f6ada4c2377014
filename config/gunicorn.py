"""gunicorn's hooks for Loupe's web processes: config/processes.py starts gunicorn with
`--config python:config.gunicorn`, beside the command-line settings it gives."""

from django.conf import settings

from config.processes import lower_priority


def post_worker_init(worker) -> None:
    """Once the worker has loaded the app (Django's settings are set up) and before it starts its
    threads, which inherit this: lower the process's CPU priority by `LOUPE_WEB_NICE`.

    Where web processes share cores with PostgreSQL and the query worker (`make run` on a small
    machine), a search's later steps (its SQL, its batched query encode) then run ahead of the Python
    that starts more searches: the work nearest to done goes first, and the tail shortens at the same
    throughput (docs/benchmarks.md, "Under load"). Indexing and other background work run lower still
    (config/celery.py). A nice value only orders processes that compete for a core; a web process
    alone on its cores runs as fast as before."""
    lower_priority(settings.LOUPE_WEB_NICE)

