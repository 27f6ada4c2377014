"""Worker liveness that health can read without asking the workers anything, and the recovery
sweep asked for whenever a worker's consumer (re)connects to the broker.

Each worker's consumer writes a short-lived Redis key every few seconds naming its queues; health
reads the keys. A broadcast ping (`inspect().ping()`) answers only while the worker's remote-control
consumer is subscribed, and after a broker restart it could stay silent while the worker went on
indexing (docs/reliability.md, finding 4). A key written by the worker's own timer says exactly
"this worker is connected and consuming these queues", and expires by itself when it is not.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import redis
from celery import bootsteps
from django.conf import settings

log = logging.getLogger(__name__)

KEY_PREFIX = "loupe:worker:"


def interval_seconds() -> float:
    return float(getattr(settings, "LOUPE_WORKER_HEARTBEAT_SECONDS", 5.0))


def ttl_seconds() -> int:
    # Three missed beats before a worker counts as gone: one slow beat is not an outage.
    return max(2, round(3 * interval_seconds()))


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


class Heartbeat(bootsteps.StartStopStep):
    """A consumer step: it starts once the worker consumes its queues and restarts with the
    consumer after a broker reconnection, so a beat always means "connected and consuming"."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None
        self.client: redis.Redis | None = None

    def start(self, parent):
        self.stop(parent)  # a consumer restart after a broker outage starts the step again
        self.client = self.client or _client()
        self.beat(parent)
        self.ask_for_recovery(parent)
        self.tref = parent.timer.call_repeatedly(interval_seconds(), self.beat, (parent,), priority=10)

    def stop(self, parent):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent):
        self.stop(parent)
        if self.client is not None:
            try:
                self.client.delete(KEY_PREFIX + parent.hostname)
            except redis.RedisError:
                pass  # the key expires by itself
            self.client.close()

    def ask_for_recovery(self, parent) -> None:
        """The consumer just (re)connected: the broker may have been down, so work it lost is looked
        for (workers/recovery.py). Never fatal to the worker."""
        from workers.recovery import request_sweep

        try:
            request_sweep(self.client, parent.app, parent.hostname)
        except Exception as exc:  # noqa: BLE001 — the next reconnection or worker start asks again
            log.warning("recovery sweep not requested: %s", exc)

    def beat(self, parent) -> None:
        queues = sorted(queue.name for queue in parent.task_consumer.queues) if parent.task_consumer else []
        from encoders.threads import applied

        payload = {"queues": queues, "pid": os.getpid(), "concurrency": getattr(parent.pool, "limit", None),
                   "torch_threads": applied(), "at": time.time()}
        try:
            self.client.set(KEY_PREFIX + parent.hostname, json.dumps(payload), ex=ttl_seconds())
        except redis.RedisError as exc:
            # The broker is the same Redis: the consumer is reconnecting and will restart this step.
            log.debug("heartbeat not written: %s", exc)


def live_workers(client: redis.Redis | None = None) -> dict[str, dict[str, Any]]:
    """{hostname: {"queues": [...], ...}} for every worker whose heartbeat has not expired."""
    own = client is None
    client = client or _client()
    try:
        keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=100))
        values = client.mget(keys) if keys else []
    finally:
        if own:
            client.close()
    workers = {}
    for key, value in zip(keys, values):
        if value is None:  # expired between SCAN and MGET
            continue
        workers[key.decode().removeprefix(KEY_PREFIX)] = json.loads(value)
    return workers


def main(argv: list[str]) -> int:
    """`python -m workers.heartbeat NAME@HOST`: exit 0 while that worker's heartbeat is live (for
    container health checks, which would otherwise need the same broadcast ping health dropped)."""
    import django

    django.setup()
    if len(argv) != 1:
        print("usage: python -m workers.heartbeat NAME@HOST")
        return 2
    beat = live_workers().get(argv[0])
    if beat is None:
        print(f"{argv[0]}: no live heartbeat")
        return 1
    print(f"{argv[0]}: live, queues {', '.join(beat['queues'])}, {time.time() - beat['at']:.1f}s ago")
    return 0


if __name__ == "__main__":
    import sys

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    sys.exit(main(sys.argv[1:]))
