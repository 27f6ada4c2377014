"""Thin Celery tasks: IDs in, a service call, nothing else. Retries are for transient failures
(database or broker connections) only; bad input fails at once with a recorded reason.

Tasks named `encode_*` go to the `encode` queue (CELERY_TASK_ROUTES), the rest to `default`."""

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

from workers import indexing, recovery, services

TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerOperationalError, ConnectionError)
RETRY_TRANSIENT = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**RETRY_TRANSIENT)
def image_process_metadata(image_ids: list[int]) -> dict[str, int]:
    return services.image_process_metadata(image_ids=image_ids)


@shared_task(**RETRY_TRANSIENT)
def encode_index_job(job_id: int) -> dict:
    return indexing.index_job_run(job_id=job_id)


@shared_task(**RETRY_TRANSIENT)
def encode_index_batch(job_id: int, seq: int, image_ids: list[int]) -> dict:
    return indexing.index_batch_run(job_id=job_id, seq=seq, image_ids=image_ids)


@shared_task(**RETRY_TRANSIENT)
def folder_import_run(job_id: int, path: str) -> dict:
    return services.folder_import_job_run(job_id=job_id, path=path)


@shared_task(**RETRY_TRANSIENT)
def resume_pending_work(lock_token: str | None = None) -> dict:
    try:
        return recovery.resume_pending_work()
    finally:
        if lock_token:
            recovery.release_sweep_lock(lock_token)
