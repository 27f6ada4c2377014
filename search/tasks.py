"""The `query` queue: encode search queries on a worker that keeps the model warm."""

from celery import shared_task

from config.errors import ApplicationError
from search.query_worker import error_as_data


@shared_task(ignore_result=False, acks_late=False)
def query_encode(model_id: str, texts: dict, image_b64: str | None, ensemble: bool, box: list | None = None) -> dict:
    """Errors come back as data: the caller turns them into its one error shape."""
    import base64

    from encoders.errors import EncoderError
    from search.query_encoding import encode_locally

    try:
        image = base64.b64decode(image_b64) if image_b64 else None
        return encode_locally(model_id=model_id, texts=texts, image_bytes=image, ensemble=ensemble, box=box)
    except (EncoderError, ApplicationError) as exc:
        return error_as_data(exc)
