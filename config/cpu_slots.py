"""First come, first served: a bound on how many searches of one web process run at once.

A gunicorn process runs 32 threads (config/processes.py) so that requests waiting on a query worker
do not hold up the rest. Those threads share one GIL: when 16 searches run Python side by side, each
gets a slice every few milliseconds and finishes when the interleaving lets it, so the same request
takes from 1x to 2.4x the median (p99/p50 2.1-2.4 at 16 clients, docs/benchmarks.md "Under load").
Let at most `LOUPE_WEB_SEARCH_SLOTS` searches run per process and queue the rest in arrival order,
and each finishes in about the time of the ones ahead of it: the same throughput, a shorter tail.
A search gives its slot up while it waits on the query worker (`released`), so text queries keep
their throughput. 0 turns the bound off.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager

from django.conf import settings

from config.request_limits import carries_query_image


class FifoSlots:
    """A counting semaphore that wakes waiters in arrival order (threading.Semaphore does not
    promise any order). A released slot passes straight to the longest waiter."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy = 0
        self._waiting: deque[threading.Event] = deque()
        self._lock = threading.Lock()
        self._held = threading.local()

    def acquire(self, *, first: bool = False) -> None:
        """`first`: ahead of everyone waiting (a search coming back from the query worker has
        waited its turn once already)."""
        with self._lock:
            if self._busy < self.size and not self._waiting:
                self._busy += 1
                self._held.count = self.holding() + 1
                return
            turn = threading.Event()
            if first:
                self._waiting.appendleft(turn)
            else:
                self._waiting.append(turn)
        turn.wait()  # the slot was handed over: _busy already counts it
        self._held.count = self.holding() + 1

    def release(self) -> None:
        self._held.count = self.holding() - 1
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._busy -= 1

    def holding(self) -> int:
        return getattr(self._held, "count", 0)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._busy

    @contextmanager
    def held(self):
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def released(self):
        """Give this thread's slot up while it waits on something else; after, take the next slot
        that frees, ahead of the searches that have not started."""
        if not self.holding():
            yield
            return
        self.release()
        try:
            yield
        finally:
            self.acquire(first=True)


_slots: FifoSlots | None = None
_slots_lock = threading.Lock()


def search_slots() -> FifoSlots | None:
    """This process's slots, or None when the bound is off."""
    global _slots
    size = int(settings.LOUPE_WEB_SEARCH_SLOTS)
    if size <= 0:
        return None
    if _slots is None or _slots.size != size:
        with _slots_lock:
            if _slots is None or _slots.size != size:
                _slots = FifoSlots(size)
    return _slots



class SearchSlotsMixin:
    """For DRF views: run `dispatch` (and render the response) inside a search slot."""

    def dispatch(self, request, *args, **kwargs):
        slots = search_slots()
        # A query image's search is not bounded: its body is read from the socket inside the request,
        # where a slow client would hold a slot, and its cost is the query worker's, which has its
        # own queue (search/query_encoding.py: query_admission).
        if slots is None or carries_query_image(request):
            return super().dispatch(request, *args, **kwargs)
        with slots.held():
            response = super().dispatch(request, *args, **kwargs)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()  # JSON encoding is part of the search's CPU
            return response


@contextmanager
def slot_released():
    """Around a wait on another process (the query worker): the slot goes to the next search."""
    slots = search_slots()
    if slots is None:
        yield
        return
    with slots.released():
        yield
