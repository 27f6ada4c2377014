"""Thin Celery tasks: IDs in, a service call, nothing else. Retries are for transient failures
(database or broker connections) only; bad input fails at once with a recorded reason.

Tasks named `encode_*` go to the `encode` queue (CELERY_TASK_ROUTES), the rest to `default`."""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

from albums.storage import StorageUnavailableError
from workers import fetching, indexing, maps, recovery, services
from workers.pipeline import EncoderOutOfMemoryError

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerOperationalError, ConnectionError, StorageUnavailableError,
                    EncoderOutOfMemoryError)
RETRY_TRANSIENT = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**RETRY_TRANSIENT)
def image_process_metadata(image_ids: list[int]) -> dict[str, int]:
    result = services.image_process_metadata(image_ids=image_ids)
    services.metadata_marks_clear(image_ids)  # not on a retry: the images are still held
    return result


@shared_task(**RETRY_TRANSIENT)
def encode_index_job(job_id: int) -> dict:
    return indexing.index_job_run(job_id=job_id)


@shared_task(bind=True)
def encode_index_batch(self, job_id: int, seq: int, image_ids: list[int]) -> dict:
    """A chunk that raises is retried with backoff: up to RETRY_TRANSIENT's count for a transient
    cause, LOUPE_CHUNK_MAX_ATTEMPTS in all for any other (a soft time limit on a slow CPU, a bug).
    Then its job ends `failed` with the reason, instead of going stale and being planned again
    by the recovery sweep for ever. A run that never ended (its worker killed by the hard time
    limit or the OOM killer; the message comes back, acks_late) counts as an attempt too."""
    lost = _runs_started(job_id, seq) - 1 - self.request.retries
    if lost >= settings.LOUPE_CHUNK_MAX_ATTEMPTS:
        reason = (f"Chunk {seq} was lost with its worker {lost} times (killed: the hard time limit, or out "
                  "of memory?).")
        logger.error("index job %s: %s", job_id, reason)
        indexing.index_job_fail(job_id=job_id, message=reason)
        return {"failed": reason}
    try:
        return indexing.index_batch_run(job_id=job_id, seq=seq, image_ids=image_ids)
    except Exception as exc:
        attempts = self.request.retries + 1
        transient = isinstance(exc, TRANSIENT_ERRORS)
        allowed = RETRY_TRANSIENT["max_retries"] + 1 if transient else settings.LOUPE_CHUNK_MAX_ATTEMPTS
        if attempts < allowed:
            countdown = min(RETRY_TRANSIENT["retry_backoff_max"], RETRY_TRANSIENT["retry_backoff"] ** attempts)
            raise self.retry(exc=exc, countdown=countdown) from exc
        reason = f"Chunk {seq} failed {attempts} time{'s' if attempts > 1 else ''}: {type(exc).__name__}: {exc}"
        logger.error("index job %s: %s", job_id, reason, exc_info=True)
        indexing.index_job_fail(job_id=job_id, message=reason)
        return {"failed": reason}


def _runs_started(job_id: int, seq: int) -> int:
    """How many times this chunk has started, counted in the shared cache (1 when it cannot count)."""
    key = f"loupe:chunk-runs:{job_id}:{seq}"
    try:
        cache.add(key, 0, timeout=24 * 3600)
        return cache.incr(key)
    except Exception:  # noqa: BLE001 — counting is a safeguard; Redis being away must not stop indexing
        logger.warning("chunk %s of job %s: runs not counted", seq, job_id, exc_info=True)
        return 1


@shared_task(**RETRY_TRANSIENT)
def folder_import_run(job_id: int, path: str) -> dict:
    return services.folder_import_job_run(job_id=job_id, path=path)


# Not acks_late: a download outlasts the broker's visibility timeout, which would hand the message
# to a second worker mid-download. A worker that dies leaves the job stale; the recovery sweep
# starts another. Hours, not the default minutes: a checkpoint is hundreds of MB to GB.
@shared_task(acks_late=False, soft_time_limit=4 * 3600, time_limit=4 * 3600 + 60)
def model_fetch_run(job_id: int) -> dict:
    return fetching.model_fetch_run(job_id=job_id)


@shared_task(**RETRY_TRANSIENT)
def resume_pending_work(lock_token: str | None = None) -> dict:
    try:
        return recovery.resume_pending_work()
    finally:
        if lock_token:
            recovery.release_sweep_lock(lock_token)


# Not acks_late: the job claims only a queued row, so a redelivered message would do nothing; a worker
# that dies leaves the job stale, and the next rebuild request replaces it. An hour, not the default
# five minutes: a 100k album's fit took 96 s on 2 cores, and a million is ten times the work.
@shared_task(acks_late=False, soft_time_limit=3600, time_limit=3660)
def map_build(job_id: int) -> dict:
    """On the `default` queue: fit an album's semantic map, or place its new images on it."""
    return maps.map_job_run(job_id=job_id)
