"""gunicorn's hooks for Loupe's web processes: config/processes.py starts gunicorn with
`--config python:config.gunicorn`, beside the command-line settings it gives."""

from django.conf import settings

from config.processes import lower_priority


def post_worker_init(worker) -> None:
    """Once the worker has loaded the app (Django's settings are set up) and before it starts its
    threads, which inherit this: `LOUPE_APP_NICE` steps lower for the CPU than PostgreSQL and Redis,
    as the query worker (config/celery.py). Where they share cores (`make run` on a small machine), a
    search's SQL then runs ahead of the Python that starts more searches: the work nearest to done
    goes first, and the tail shortens (docs/benchmarks.md, "Under load"). A nice value only orders
    processes that compete for a core; a web process alone on its cores runs as fast as before."""
    lower_priority(settings.LOUPE_APP_NICE)
