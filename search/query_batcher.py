"""Concurrent query encodes share one forward pass: a small first-in, first-out batching queue.

Every process that encodes search queries (a web process with `LOUPE_QUERY_ENCODING=web`, or a
`query` worker's task threads) hands its items to one `QueryBatcher`. One thread serves them in
arrival order: it takes the oldest item, waits up to `max_wait` for more of the same kind (same
model, texts or images, same ensembling) up to `max_batch`, and runs them through the model at
once. It waits only under load (the last batch had company): a lone query on an idle queue goes
through at once instead of paying the wait. Items of another kind wait their turn in the queue;
nobody is overtaken by a later arrival.

A forward pass on a batch of 16 costs far less than 16 passes (the weights are read once), so
throughput rises with load instead of each request queueing behind the others for the CPU. When
the queue already holds more work than it can finish within `max_queue_seconds` (estimated from the
measured time per item), a new item is refused at once with `QueryQueueFullError`: a 503 with
Retry-After, never a wait of seconds with a timeout at the end.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from config.errors import ServiceUnavailableError

# Before the first batch is measured, a guess of one item's cost; it only sizes the first refusals.
_INITIAL_SECONDS_PER_ITEM = 0.05
_EMA_WEIGHT = 0.2


class QueryQueueFullError(ServiceUnavailableError):
    code = "query_queue_full"

    def __init__(self, *, retry_after: int, pending: int, where: str) -> None:
        super().__init__(
            f"The server is encoding {pending} queries already; try again in {retry_after} s.",
            extra={"retry_after_seconds": retry_after, "pending": pending, "where": where},
        )


@dataclass
class _Item:
    key: Hashable
    payload: object
    run: Callable[[list], Sequence]
    future: Future = field(default_factory=Future)


class QueryBatcher:
    def __init__(self, *, max_batch: int, max_wait: float, max_queue_seconds: float, name: str = "query-batcher"):
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait))
        self.max_queue_seconds = float(max_queue_seconds)
        self._queue: deque[_Item] = deque()
        self._in_service = 0
        # Whether the last batch had company (or left work queued): only then is a moment's wait
        # likely to bring more. A lone query on an idle queue is served at once.
        self._under_load = False
        self._cond = threading.Condition()
        self._seconds_per_item = _INITIAL_SECONDS_PER_ITEM
        self.stats = {"batches": 0, "items": 0, "largest_batch": 0, "refused": 0}
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    # --- callers ------------------------------------------------------------------------------
    def submit(self, key: Hashable, payload: object, run: Callable[[list], Sequence]) -> Future:
        """Queue one item; `run(payloads)` of a batch of same-key items returns one result each.

        Raises QueryQueueFullError when the work ahead would take longer than the bound."""
        item = _Item(key=key, payload=payload, run=run)
        with self._cond:
            self.refuse_if_full()
            self._queue.append(item)
            self._cond.notify()
        return item.future

    def refuse_if_full(self) -> None:
        """Raise now what `submit` would raise, before the caller spends work (a decode) on an item."""
        with self._cond:
            pending = len(self._queue) + self._in_service
            wait = (pending + 1) * self._seconds_per_item
            if pending and wait > self.max_queue_seconds:
                self.stats["refused"] += 1
                raise QueryQueueFullError(retry_after=max(1, math.ceil(wait - self.max_queue_seconds)), pending=pending,
                                          where="encoder queue")

    # --- the serving thread -------------------------------------------------------------------
    def _next_batch(self) -> list[_Item]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            first = self._queue.popleft()
            batch = [first]
            deadline = time.monotonic() + (self.max_wait if self._under_load else 0.0)
            while len(batch) < self.max_batch:
                taken = self._take_same_key(first.key, self.max_batch - len(batch))
                batch += taken
                remaining = deadline - time.monotonic()
                if len(batch) >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._in_service = len(batch)
            return batch

    def _take_same_key(self, key: Hashable, limit: int) -> list[_Item]:
        """The oldest queued items with this key, in order, leaving the others where they are."""
        taken: list[_Item] = []
        kept: deque[_Item] = deque()
        while self._queue and len(taken) < limit:
            item = self._queue.popleft()
            (taken if item.key == key else kept).append(item)
        kept.extend(self._queue)
        self._queue.clear()
        self._queue.extend(kept)
        return taken

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            started = time.perf_counter()
            try:
                results = batch[0].run([item.payload for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 - every waiter gets the error, the thread lives on
                for item in batch:
                    item.future.set_exception(exc)
            else:
                for item, result in zip(batch, results, strict=True):
                    item.future.set_result(result)
            elapsed = time.perf_counter() - started
            with self._cond:
                self._in_service = 0
                self._under_load = len(batch) > 1 or bool(self._queue)
                self.stats["batches"] += 1
                self.stats["items"] += len(batch)
                self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
                per_item = elapsed / len(batch)
                self._seconds_per_item += _EMA_WEIGHT * (per_item - self._seconds_per_item)


class QueryAdmission:
    """How many query encodes one web process lets wait at once; past that, a 503 at once.

    With encoding on the `query` worker the web cannot see the worker's queue, and a request that
    waited for a gunicorn thread and then for the worker would only learn of an overload at its
    timeout. Each web process admits at most `limit` encodes in flight; Retry-After is the recent
    mean time one took."""

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._in_flight = 0
        self._lock = threading.Lock()
        self._seconds = _INITIAL_SECONDS_PER_ITEM

    def refuse_if_full(self) -> None:
        """Raise the 503 now if no slot is free (a request may still lose the race for the last one)."""
        with self._lock:
            if self._in_flight >= self.limit:
                raise self._refusal()

    def _refusal(self) -> QueryQueueFullError:
        return QueryQueueFullError(retry_after=max(1, math.ceil(self._seconds)), pending=self._in_flight,
                                   where="web process")

    @contextmanager
    def slot(self):
        with self._lock:
            if self._in_flight >= self.limit:
                raise self._refusal()
            self._in_flight += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._in_flight -= 1
                self._seconds += _EMA_WEIGHT * (elapsed - self._seconds)

    @property
    def in_flight(self) -> int:
        return self._in_flight


class LruCache:
    """A small thread-safe least-recently-used map (text embeddings of repeated queries)."""

    def __init__(self, max_entries: int):
        self.max_entries = int(max_entries)
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key, value) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
