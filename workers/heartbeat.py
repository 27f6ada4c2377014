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

import django
import redis
from celery import bootsteps
from django.conf import settings

from encoders.threads import applied

log = logging.getLogger(__name__)

KEY_PREFIX = "loupe:worker:"
NAMES_KEY = "loupe:workers"  # the names that have beaten: health reads these keys, never scans Redis


def interval_seconds() -> float:
    return float(getattr(settings, "LOUPE_WORKER_HEARTBEAT_SECONDS", 5.0))


def ttl_seconds() -> int:
    # Three missed beats before a worker counts as gone: one slow beat is not an outage.
    return max(2, round(3 * interval_seconds()))


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def write_beat(client: redis.Redis, name: str, payload: dict[str, Any], *, ttl: int) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.set(KEY_PREFIX + name, json.dumps(payload), ex=ttl)
        pipe.sadd(NAMES_KEY, name)
        pipe.execute()


def remove_beat(client: redis.Redis, name: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(KEY_PREFIX + name)
        pipe.srem(NAMES_KEY, name)
        pipe.execute()


class Heartbeat(bootsteps.StartStopStep):
    """A consumer step: it starts once the worker consumes its queues and restarts with the
    consumer after a broker reconnection, so a beat always means "connected and consuming"."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None
        self.client: redis.Redis | None = None
        self.last_sweep_request = 0.0

    def start(self, parent):
        self.stop(parent)  # a consumer restart after a broker outage starts the step again
        self.client = self.client or _client()
        self.ask_for_recovery(parent)  # the broker may have been down: look for work it lost
        self.beat(parent)
        self.tref = parent.timer.call_repeatedly(interval_seconds(), self.beat, (parent,), priority=10)

    def stop(self, parent):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent):
        self.stop(parent)
        if self.client is not None:
            try:
                remove_beat(self.client, parent.hostname)
            except redis.RedisError:
                pass  # the key expires by itself
            self.client.close()

    def ask_for_recovery(self, parent) -> None:
        """On every (re)connection, and every LOUPE_RECOVERY_SWEEP_SECONDS: work a broker outage lost is
        looked for (workers/recovery.py; the web can fail to publish while the workers stay connected).
        Never fatal to the worker."""
        # recovery imports models, and config.celery imports this module before the app registry is ready
        from workers.recovery import request_sweep

        self.last_sweep_request = time.monotonic()
        try:
            request_sweep(self.client, parent.app, parent.hostname)
        except Exception as exc:  # noqa: BLE001 — the next reconnection or worker start asks again
            log.warning("recovery sweep not requested: %s", exc)

    def beat(self, parent) -> None:
        queues = sorted(queue.name for queue in parent.task_consumer.queues) if parent.task_consumer else []
        payload = {"queues": queues, "pid": os.getpid(), "concurrency": getattr(parent.pool, "limit", None),
                   "torch_threads": applied(), "at": time.time()}
        try:
            write_beat(self.client, parent.hostname, payload, ttl=ttl_seconds())
        except redis.RedisError as exc:
            # The broker is the same Redis: the consumer is reconnecting and will restart this step.
            log.debug("heartbeat not written: %s", exc)
            return
        if time.monotonic() - self.last_sweep_request >= settings.LOUPE_RECOVERY_SWEEP_SECONDS:
            self.ask_for_recovery(parent)


def live_workers(client: redis.Redis | None = None) -> dict[str, dict[str, Any]]:
    """{hostname: {"queues": [...], ...}} for every worker whose heartbeat has not expired."""
    own = client is None
    client = client or _client()
    try:
        names = sorted(name.decode() for name in client.smembers(NAMES_KEY))
        values = client.mget([KEY_PREFIX + name for name in names]) if names else []
        gone = [name for name, value in zip(names, values) if value is None]
        if gone:
            client.srem(NAMES_KEY, *gone)  # expired: a worker that died without saying so
    finally:
        if own:
            client.close()
    return {name: json.loads(value) for name, value in zip(names, values) if value is not None}


def main(argv: list[str]) -> int:
    """`python -m workers.heartbeat NAME@HOST`: exit 0 while that worker's heartbeat is live (for
    container health checks, which would otherwise need the same broadcast ping health dropped)."""
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
