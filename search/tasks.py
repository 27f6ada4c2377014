"""The `query` queue: encode search queries on a worker that keeps the model warm."""

import base64

from celery import shared_task

from config.errors import ApplicationError
from encoders.errors import EncoderError
from search import duplicates
from search.query_encoding import encode_locally
from search.query_worker import error_as_data, query_image_take, reply_or_return, vectors_to_wire


@shared_task(acks_late=True, reject_on_worker_lost=True)
def duplicate_scan_run(job_id: int) -> dict:
    """On the `default` queue: a near-duplicate scan of an album too large to answer in a request."""
    return duplicates.duplicate_scan_run(job_id=job_id)


# send_events=False: a query encode is a few ms and there are hundreds a second under load; three
# monitoring events each (received, started, succeeded) cost its latency more than they tell Flower.
# The answer goes to `reply_key` (search.query_worker.send_reply), sent with ignore_result; a web
# process of an earlier release sends no key and waits on the result backend, hence ignore_result=False
# here. resultrepr_maxsize: Celery writes every result's repr, logged or not (config/celery.py keeps
# query tasks out of the log).
@shared_task(ignore_result=False, acks_late=False, send_events=False, resultrepr_maxsize=80)
def query_encode(model_id: str, texts: dict, image: bytes | str | None, ensemble: bool, box: list | None = None,
                 image_key: str | None = None, reply_key: str | None = None) -> dict | None:
    """Errors come back as data: the caller turns them into its one error shape. `image_key`: where the
    web left the query image (search.query_worker.query_image_stash), the way the search API sends it;
    `image`: raw bytes (msgpack, from an earlier release's web) or base64 text from a JSON caller."""

    try:
        if image_key is not None:
            image = query_image_take(image_key)
        if isinstance(image, str):
            image = base64.b64decode(image)
        result = encode_locally(model_id=model_id, texts=texts, image_bytes=image or None, ensemble=ensemble, box=box)
        answer = {**result, "vectors": vectors_to_wire(result["vectors"])}
    except (EncoderError, ApplicationError) as exc:
        answer = error_as_data(exc)
    return reply_or_return(reply_key, answer)
