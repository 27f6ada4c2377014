"""Turning a query's texts and image into vectors of the model an album's search uses.

Two places can do it (`LOUPE_QUERY_ENCODING`): `web` encodes in the web process (the encoder is
cached per process; needs torch there), `worker` sends a task to the `query` queue, where a worker
keeps the model warm, and waits for the answer. `auto` picks `web` when torch is importable.
Either way the choice of prompt ensembling is an argument of the call, never encoder state, so
concurrent requests with different settings cannot interfere.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from config.cpu_slots import slot_released
from config.errors import ApplicationError, ServiceUnavailableError
from PIL import Image

from encoders.base import siglip_calibrate
from encoders.images import ENCODER_DRAFT, open_decoded
from encoders.model_ids import ModelId, parse_model_id
from encoders.pooled_encoder import PooledEncoder, keep_alpha
from encoders.registry import get_encoder
from encoders.pooling import MASKED
from search.query_batcher import LruCache, QueryAdmission, QueryBatcher
from search.query_worker import ask_query_worker, query_image_stash, vectors_from_wire


class EmbeddingModelMismatchError(ApplicationError):
    status_code = 409
    code = "embedding_model_mismatch"


@dataclass(frozen=True)
class EncodedQuery:
    model_id: str
    vectors: dict[str, np.ndarray]  # part -> (dim,) unit vector
    siglip_logits: tuple[float, float] | None = None  # (logit_scale, logit_bias) when text needs calibration

    def calibrate(self, cos: np.ndarray) -> np.ndarray:
        if self.siglip_logits is None:
            return np.asarray(cos, dtype=np.float32)
        scale, bias = self.siglip_logits
        return siglip_calibrate(cos, logit_scale=scale, logit_bias=bias)


def spec_of_model_id(model_id: str) -> str:
    """`<spec>@sha256:<hex>[+pooling=…][+storage=…]` → `<spec>`: search encodes with the model the
    album's vectors were made with."""
    return parse_model_id(model_id).spec


def encode_locally(
    *, model_id: str, texts: dict[str, str], image_bytes: bytes | None, ensemble: bool, box: list | None = None
) -> dict:
    """`encode_with` for a model_id that arrives as text (the query task's argument): parsed here, once."""
    return encode_with(model=parse_model_id(model_id), texts=texts, image_bytes=image_bytes, ensemble=ensemble, box=box)


def encode_with(
    *, model: ModelId, texts: dict[str, str], image_bytes: bytes | None, ensemble: bool, box: list | None = None
) -> dict:
    """Encode on this process's cached encoder, pooled as the album's vectors were: float32 vectors
    (the query task sends them with `vectors_to_wire`). With `box`, the image part is the box's
    region vector."""
    model_id = str(model)
    base = get_encoder(model.spec)
    if base.model_id != model.encoder_model_id:
        raise EmbeddingModelMismatchError(
            f"The album's vectors were made with {model_id}, but this server now loads {base.model_id} "
            "(the weights file changed). Re-index the album to search it again.",
            extra={"album_model_id": model_id, "loaded_model_id": base.model_id},
        )
    segmenter = None
    if model.pooling == MASKED:
        from encoders.segmenter import get_person_segmenter  # imports torch: the web tier imports this module

        segmenter = get_person_segmenter()
    # The precision the album's vectors were made in, whatever this machine would pick for new ones.
    encoder = PooledEncoder(base, pooling=model.pooling, storage=model.storage, segmenter=segmenter, precision=model.precision)
    if encoder.model_id != model_id:  # the person segmenter changed (or was set or unset) since indexing
        raise EmbeddingModelMismatchError(
            f"The album's vectors were made with {model_id}, but this server now makes {encoder.model_id} "
            "(LOUPE_PERSON_SEGMENTER or its weights changed). Re-index the album to search it again.",
            extra={"album_model_id": model_id, "loaded_model_id": encoder.model_id},
        )
    vectors: dict[str, np.ndarray] = {}
    parts = [part for part in ("text", "negative") if texts.get(part)]
    # Submitted before the image is decoded, so the decode overlaps the queue's wait.
    pending = {part: _text_vector_future(base, texts[part], ensemble) for part in parts}
    if image_bytes is not None:
        if box is None:
            query_batcher().refuse_if_full()  # before the decode, not after
        image = _decode_query_image(image_bytes)
        if box is not None:
            try:
                vectors["region"] = np.asarray(encoder.box_vector(image, box), dtype=np.float32)
            except ValueError as exc:
                raise ApplicationError(str(exc), code="invalid_box") from None
        else:
            vectors["image"] = np.asarray(_result(query_batcher().submit(("image", encoder.model_id), image,
                                                                          encoder.encode_images)), dtype=np.float32)
    for part, future in pending.items():
        vectors[part] = np.asarray(_result(future), dtype=np.float32)
    logits = None
    if hasattr(base, "logit_scale") and hasattr(base, "logit_bias"):
        logits = [float(base.logit_scale), float(base.logit_bias)]
    return {"model_id": encoder.model_id, "vectors": vectors, "siglip_logits": logits}


def _result(future: Future):
    """The batch's answer for this item; past LOUPE_QUERY_TIMEOUT_SECONDS a 503, not a 500."""
    try:
        return future.result(timeout=settings.LOUPE_QUERY_TIMEOUT_SECONDS)
    except FutureTimeoutError:
        raise ServiceUnavailableError(
            f"The query encoder did not answer within {settings.LOUPE_QUERY_TIMEOUT_SECONDS} s; try again shortly.",
            code="query_encoder_timeout", extra={"retry_after_seconds": 5},
        ) from None


def _decode_query_image(image_bytes: bytes):
    """Decoded as the indexer decodes (workers/pipeline.py), alpha kept for masked pooling. The web
    checked only the header (search/api/views.py), so damaged data is reported here, as a 400."""
    try:
        return open_decoded(io.BytesIO(image_bytes), draft_size=ENCODER_DRAFT, convert=keep_alpha)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApplicationError(f"The query image cannot be used: its data is damaged or truncated ({exc}).",
                               code="corrupt_image") from None


# One of each per process, made on first use from the settings then in force.
_singletons: dict[str, object] = {}
_singletons_lock = threading.Lock()


def _per_process(name: str, make):
    with _singletons_lock:
        if name not in _singletons:
            _singletons[name] = make()
        return _singletons[name]


def query_batcher() -> QueryBatcher:
    """This process's one batching queue for query encodes."""
    return _per_process("batcher", lambda: QueryBatcher(
        max_batch=settings.LOUPE_QUERY_BATCH_MAX, max_wait=settings.LOUPE_QUERY_BATCH_WAIT_MS / 1000,
        max_queue_seconds=settings.LOUPE_QUERY_QUEUE_SECONDS))


def query_admission() -> QueryAdmission:
    """This process's bound on query encodes in flight (LOUPE_QUERY_MAX_IN_FLIGHT)."""
    return _per_process("admission", lambda: QueryAdmission(settings.LOUPE_QUERY_MAX_IN_FLIGHT))


def text_cache() -> LruCache:
    return _per_process("text_cache", lambda: LruCache(settings.LOUPE_QUERY_TEXT_CACHE))


def _text_vector_future(base, text: str, ensemble: bool) -> Future:
    """The text's unit vector: from the cache (keyed by the weights' model_id), else one slot in the
    next batched forward pass of this model's text tower."""
    key = (base.model_id, bool(ensemble), text)
    if (cached := text_cache().get(key)) is not None:
        done: Future = Future()
        done.set_result(cached)
        return done

    def run(batch: list[str]):
        vectors = base.encode_texts(batch, ensemble=ensemble)
        for one_text, vector in zip(batch, vectors, strict=True):
            text_cache().put((base.model_id, bool(ensemble), one_text), vector)
        return vectors

    return query_batcher().submit(("text", base.model_id, bool(ensemble)), text, run)


def query_encoding_mode() -> str:
    """`web` or `worker`: where this server encodes search queries."""
    mode = settings.LOUPE_QUERY_ENCODING
    if mode == "auto":
        return "web" if importlib.util.find_spec("torch") is not None else "worker"
    return mode


def encode_query(
    *, model: ModelId, texts: dict[str, str], image_bytes: bytes | None, ensemble: bool, box: list | None = None
) -> EncodedQuery:
    with query_admission().slot():
        if query_encoding_mode() == "web":
            result = encode_with(model=model, texts=texts, image_bytes=image_bytes, ensemble=ensemble, box=box)
        else:
            from search.tasks import query_encode  # cycle: search.tasks imports this module

            timeout = settings.LOUPE_QUERY_TIMEOUT_SECONDS
            image_key = query_image_stash(image_bytes, seconds=timeout) if image_bytes is not None else None
            with slot_released():  # the next search runs while this one waits on the worker
                result = ask_query_worker(  # the model_id travels as its text; the worker parses it once
                    query_encode, (str(model), texts, None, ensemble, box, image_key), timeout=timeout,
                )
            result["vectors"] = vectors_from_wire(result["vectors"])
    return EncodedQuery(
        model_id=result["model_id"],
        vectors=result["vectors"],
        siglip_logits=tuple(result["siglip_logits"]) if result["siglip_logits"] else None,
    )
