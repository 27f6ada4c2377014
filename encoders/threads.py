"""How many intra-op threads torch uses in this process, from how many requests it serves at once.

Torch gives every forward pass one thread per core. A process that runs several at once (the
query worker's 4 task threads, gunicorn's threads when the web encodes queries) then puts
concurrency × cores threads on the cores. bench/torch_threads.py measured on 2 cores, 4 concurrent
queries, in two runs: 1 thread gives 1.13× and 1.30× the queries/s of the default and a lower p50,
while a batch (the encode worker, one task at a time) runs at 0.60× and 0.74× on 1 thread. So:
cores ÷ concurrency, at least 1.

`LOUPE_TORCH_THREADS` > 0 sets it outright. Otherwise a Celery worker notes its concurrency at start
(config/celery.py) and the launcher sets the web's; a process with neither keeps torch's default.
Applied once, when the process loads its first encoder, so the web tier still never imports torch
for nothing.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

log = logging.getLogger(__name__)

_concurrency: int | None = None
_applied: int | None = None
_lock = threading.Lock()


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def cores() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (`docker --cpus`)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open(CGROUP_CPU_MAX) as fp:
            quota, period = fp.read().split()[:2]
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, int(quota) // int(period)))


def note_concurrency(concurrency) -> None:
    global _concurrency
    _concurrency = concurrency if isinstance(concurrency, int) and concurrency > 0 else None


def intra_op_threads() -> int | None:
    """The count to use, or None to leave torch's default."""
    if settings.LOUPE_TORCH_THREADS > 0:
        return settings.LOUPE_TORCH_THREADS
    if _concurrency is None:
        return None
    return max(1, cores() // _concurrency)


def apply_once() -> int | None:
    """Set torch's intra-op threads for this process (first call only). Returns what was set."""
    global _applied
    with _lock:
        if _applied is None:
            wanted = intra_op_threads()
            if wanted is not None:
                import torch  # torch stays out of the web tier, which imports this module

                torch.set_num_threads(wanted)
                log.info("torch intra-op threads: %d (%d cores, concurrency %s)", wanted, cores(), _concurrency)
            _applied = wanted or 0
        return _applied or None


def applied() -> int | None:
    """What apply_once set (None until then, or when torch's default was kept)."""
    return _applied or None


def _reset_for_tests() -> None:
    global _applied, _concurrency
    _applied = _concurrency = None
