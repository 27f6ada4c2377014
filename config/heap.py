"""Keep the cyclic garbage collector's pauses out of request latency.

A search request leaves a few hundred objects in reference cycles (DRF's serializer fields point at
their serializer, its request at its view), and only the collector frees them. Each of its full
collections walked every object of the process as well: Django, NumPy, psycopg, and in a query
worker torch and the loaded model. Under 16 clients those collections held the GIL for 0.1-0.7 s
(measured in the web processes), and they were the tail of the latency (docs/benchmarks.md, "Under
load"). Objects a process keeps for its whole life (modules, URL patterns, a loaded model) are moved
out of the collector's sight once they exist (`gc.freeze`); collections then walk only what the
requests made.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def freeze_long_lived() -> None:
    """Collect what is garbage now, then freeze every object still alive: the process keeps them."""
    with _lock:
        gc.collect()
        gc.freeze()
