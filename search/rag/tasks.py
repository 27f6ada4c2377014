"""Vision-RAG work for the workers: patch embedding on `encode`, classification on `query`."""

import base64

from celery import shared_task

from config.errors import ApplicationError
from encoders.errors import EncoderError
from search.query_worker import error_as_data, query_image_take, reply_or_return
from search.rag.classify import classify_locally
from search.rag.indexing import support_patches_compute
from search.rag.labeling import label_job_run


@shared_task(acks_late=True)
def encode_support_patches(support_set_id: int, generation: int, support_image_ids: list[int]) -> dict:
    return support_patches_compute(support_set_id=support_set_id, generation=generation, support_image_ids=support_image_ids)


@shared_task(ignore_result=False, acks_late=False, send_events=False, resultrepr_maxsize=80)  # as search.tasks.query_encode
def query_classify(support_set_id: int, image: bytes | str | None, params: dict, image_key: str | None = None,
                   reply_key: str | None = None) -> dict | None:
    """Errors come back as data: the caller turns them into its one error shape. `image_key`: where the
    web left the image (search.query_worker.query_image_stash), the way the API sends it; `image`: raw
    bytes (msgpack, from an earlier release's web) or base64 text from a JSON caller."""

    try:
        if image_key is not None:
            image = query_image_take(image_key)
        image_bytes = base64.b64decode(image) if isinstance(image, str) else image
        answer = classify_locally(support_set_id=support_set_id, image_bytes=image_bytes, params=params)
    except (EncoderError, ApplicationError) as exc:
        answer = error_as_data(exc)
    return reply_or_return(reply_key, answer)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def encode_label_images(job_id: int, after_id: int = 0) -> dict:
    """A labeling job (search/rag/labeling.py), on the `encode` queue where the encoders are."""
    return label_job_run(job_id=job_id, after_id=after_id)
