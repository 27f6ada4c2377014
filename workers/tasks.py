"""Thin Celery tasks: IDs in, a service call, nothing else. Retries are for transient failures
(database or broker connections) only; bad input fails at once with a recorded reason."""

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

from workers import services

TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerOperationalError, ConnectionError)


@shared_task(
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def image_process_metadata(image_ids: list[int]) -> dict[str, int]:
    return services.image_process_metadata(image_ids=image_ids)
