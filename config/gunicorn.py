"""gunicorn's hooks for Loupe's web processes: config/processes.py starts gunicorn with
`--config python:config.gunicorn`, beside the command-line settings it gives."""

import os

from django.conf import settings


def post_worker_init(worker) -> None:
    """Once the worker has loaded the app (Django's settings are set up) and before it starts its
    threads, which inherit this: lower the process's CPU priority by `LOUPE_WEB_NICE`.

    Where web processes share cores with PostgreSQL and the query worker (`make run` on a small
    machine), a search's later steps (its SQL, its batched query encode) then run ahead of the Python
    that starts more searches: the work nearest to done goes first, and the tail shortens at the same
    throughput (docs/benchmarks.md, "Under load"). A nice value only orders processes that compete for
    a core; a web process alone on its cores runs as fast as before."""
    if settings.LOUPE_WEB_NICE > 0:
        lower_priority(settings.LOUPE_WEB_NICE)


def lower_priority(by: int) -> None:
    """Every thread of this process `by` nice steps lower. Linux keeps a nice value per thread, and
    the app's imports started some already (numpy's BLAS pool): os.nice alone would leave them."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except FileNotFoundError:  # not Linux: one value for the process
        os.nice(by)
        return
    for tid in threads:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + by)
