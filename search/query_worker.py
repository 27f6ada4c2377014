"""Asking a worker of the `query` queue and waiting for its answer (query encoding, classification).

The answer comes back as JSON on a Redis list made for the one request (`send_reply`), not through
Celery's result backend. Errors travel back as data, not as pickled exceptions: the task replies
`error_as_data(exc)` and the caller raises it again in the one error shape.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
import threading

import numpy as np
import redis
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import ApplicationError, ServiceUnavailableError, encoder_error_status

# What a 503 for no answer tells the client to wait (Retry-After), as for the web's own encoder.
RETRY_AFTER_SECONDS = 5

BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError)


def _broker_unavailable(exc: BaseException) -> ServiceUnavailableError:
    logging.getLogger(__name__).warning("query worker not reachable: the broker is unavailable: %s", exc)
    return ServiceUnavailableError(
        "The message broker is unavailable, so no query worker can be asked; try again shortly.",
        code="broker_unavailable", extra={"retry_after_seconds": RETRY_AFTER_SECONDS},
    )


def error_as_data(exc) -> dict:
    """An ApplicationError or EncoderError, with the status the API's exception handler gives it."""
    status = exc.status_code if isinstance(exc, ApplicationError) else encoder_error_status(exc) or 400
    return {"error": {"message": exc.message, "code": exc.code, "extra": exc.extra, "status": status}}


class _NoSentEvent:
    """Query tasks send no monitoring events (search/tasks.py: send_events=False), so they send no
    task-sent either: Flower would list every search as sent and never started."""

    def publish(self, *args, **kwargs) -> None:
        return None


_NO_SENT_EVENT = _NoSentEvent()


def vectors_to_wire(vectors: dict) -> dict[str, str]:
    """A query task's vectors as base64 of their float32 bytes: exact, and a fraction of the CPU of
    512 floats written as JSON numbers by the worker and parsed back by the web."""
    return {part: base64.b64encode(np.ascontiguousarray(v, dtype=np.float32).tobytes()).decode("ascii")
            for part, v in vectors.items()}


def vectors_from_wire(vectors: dict) -> dict[str, np.ndarray]:
    """`vectors_to_wire` undone; a list of numbers is what a worker of an earlier release sends."""
    return {part: (np.frombuffer(base64.b64decode(v), dtype=np.float32) if isinstance(v, str)
                   else np.asarray(v, dtype=np.float32))
            for part, v in vectors.items()}


REPLY_KEY_PREFIX = "loupe:query-reply:"
# A reply the web stopped waiting for is gone after this long.
REPLY_SECONDS = 60


def ask_query_worker(task, args: tuple, *, timeout: float) -> dict:
    """Send the task and wait for its reply: a list in Redis under a key made for this request, which
    the worker pushes to (`send_reply`) and this thread pops (BLPOP). Celery's result backend was the
    way before: a SUBSCRIBE and an UNSUBSCRIBE per search, and one pub/sub connection per process
    whose every message woke each waiting thread. Query images do not ride in `args` either: they
    wait beside the task (`query_image_stash`)."""
    reply_key = REPLY_KEY_PREFIX + secrets.token_hex(16)
    try:
        # Once the caller has given up, a worker that reaches the task late drops it unrun.
        task.apply_async(args, {"reply_key": reply_key}, expires=timeout, ignore_result=True,
                         event_dispatcher=_NO_SENT_EVENT)
    except BROKER_ERRORS as exc:
        raise _broker_unavailable(exc) from None
    try:
        reply = _reply_store(timeout).blpop([reply_key], timeout=timeout)
    except BROKER_ERRORS as exc:  # Redis went away while the answer was awaited
        raise _broker_unavailable(exc) from None
    if reply is None:
        raise ServiceUnavailableError(
            f"No query worker answered within {timeout} s; is a worker consuming the `query` queue?",
            code="query_worker_unavailable", extra={"retry_after_seconds": RETRY_AFTER_SECONDS},
        )
    result = json.loads(reply[1])
    if "error" in result:
        error = result["error"]
        raise ApplicationError(error["message"], code=error["code"], extra=error["extra"]).with_status(error["status"])
    return result


def reply_or_return(reply_key: str | None, answer: dict) -> dict | None:
    """A query task's end: the answer to the waiting web thread, or, for a web process of an earlier
    release (no key), the return value its result backend waits for."""
    if reply_key is None:
        return answer
    send_reply(reply_key, answer)
    return None


def send_reply(reply_key: str, result: dict) -> None:
    """On the worker: the task's answer, for the one web thread waiting on `reply_key`."""
    if not reply_key.startswith(REPLY_KEY_PREFIX):
        raise ValueError("not a query reply key")
    with _reply_store(0).pipeline(transaction=True) as pipe:
        pipe.rpush(reply_key, json.dumps(result, separators=(",", ":")))
        pipe.expire(reply_key, REPLY_SECONDS)
        pipe.execute()


_stores: dict[tuple[str, int], redis.Redis] = {}
_stores_lock = threading.Lock()


def _reply_store(waits: float) -> redis.Redis:
    """This process's client for replies, with its own connection pool: a waiting search holds a
    connection for as long as it waits, so the socket timeout outlasts the longest wait."""
    key = (settings.REDIS_URL, math.ceil(waits))
    with _stores_lock:
        if key not in _stores:
            _stores[key] = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1,
                                                socket_timeout=key[1] + 2)
        return _stores[key]


QUERY_IMAGE_KEY_PREFIX = "loupe:query-image:"


class QueryImageGoneError(ServiceUnavailableError):
    code = "query_image_expired"

    def __init__(self) -> None:
        super().__init__("The query image was gone before a query worker took it; try again.",
                         extra={"retry_after_seconds": 1})


def query_image_stash(data: bytes, *, seconds: float) -> str:
    """The query image's bytes under a random key of the cache (Redis) for as long as the caller waits;
    the task carries the key. Inside the task message a 450 KB photo was base64-encoded into the
    broker's JSON envelope, copied into its unacked hash and parsed back: measured under 16
    clients, a third of the query worker's CPU went to its consumer thread moving such messages."""
    key = QUERY_IMAGE_KEY_PREFIX + secrets.token_hex(16)
    try:
        cache.set(key, data, timeout=max(1, int(seconds) + 1))
    except BROKER_ERRORS as exc:
        raise _broker_unavailable(exc) from None
    return key


def query_image_take(key: str) -> bytes:
    """The bytes `query_image_stash` left, removed as they are read (one reader: the task)."""
    if not key.startswith(QUERY_IMAGE_KEY_PREFIX):
        raise ValueError("not a query image key")
    data = cache.get(key)
    cache.delete(key)
    if data is None:
        raise QueryImageGoneError()
    return data
