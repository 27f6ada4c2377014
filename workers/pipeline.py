"""Decode on a pool of CPU workers while the encoder works, so the device never waits on JPEG.

`embed_stored_images` takes (image_id, storage name) pairs in a fixed order and returns the vectors
of the images that decoded, in that order, and a reason for each that did not. Decoding runs ahead
in the pool (threads by default: Pillow releases the GIL while it decodes; processes where the
benchmark says so) and the encoder consumes micro-batches as soon as they are ready.

The encoder may be a plain `Encoder` or the album's `PooledEncoder` (pooling, region tokens): a
plain one is treated as mean pooling. For masked pooling the decoder keeps the alpha channel the
mask comes from.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image

from encoders.images import ENCODER_DRAFT, open_decoded
from encoders.pooled_encoder import PooledEncoder, keep_alpha
from encoders.pooling import Pooled

# CPU BLAS kernels round differently for a batch of, say, 7 rows than for 8, so the same image could
# get a vector one ulp apart depending on how a chunk happened to split. Every forward pass therefore
# gets a multiple of this many rows (the last micro-batch padded with copies, their rows dropped):
# measured here, rows are then byte-identical whatever the micro-batch, chunk and worker count.
ROW_MULTIPLE = 8

MISSING = "The stored file is missing."

# The largest input any bundled encoder takes; draft mode never decodes below twice this, so the
# encoder's own resize still has real pixels to work with. The same size as a query image's.
DEFAULT_DRAFT = ENCODER_DRAFT


@dataclass
class Embedded:
    image_ids: list[int] = field(default_factory=list)
    vectors: np.ndarray | None = None
    failures: dict[int, str] = field(default_factory=dict)
    regions: np.ndarray | None = None  # (n, R, dim) for regions pooling, rows as image_ids
    notes: dict[int, str] = field(default_factory=dict)  # image_id -> why masked pooling fell back
    concepts: np.ndarray | None = None  # (n, 1000) class probabilities, rows as image_ids (encoders/concepts.py)


def _open(fp, draft: tuple[int, int], alpha: bool) -> Image.Image:
    return open_decoded(fp, draft_size=draft, convert=keep_alpha if alpha else None)


@dataclass
class WithMask:
    """A decoded image and its uploaded foreground mask (None when the mask file is unreadable)."""

    image: Image.Image
    mask: Image.Image | None


def _decode_mask(source: str | bytes | None) -> Image.Image | None:
    if source is None:
        return None
    try:
        with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as fp, Image.open(fp) as mask:
            mask.load()
            return mask.convert("L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # an unreadable mask: the image's own alpha (or the mean) serves instead


def _decode_source(
    source: str | bytes, draft: tuple[int, int], alpha: bool = False, mask: str | bytes | None = None
) -> Image.Image | WithMask | str:
    """Decode a file path or raw bytes to RGB (RGBA when `alpha` and the image has one), with its
    uploaded mask when one is given, or say why not. No Django here: process-pool workers are
    spawned fresh and run only this."""
    try:
        with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as fp:
            image = _open(fp, draft, alpha)
    except FileNotFoundError:
        return MISSING
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"Could not decode the image: {exc}"
    return image if mask is None else WithMask(image, _decode_mask(mask))


def _read(name: str) -> bytes | None:
    # albums.storage imports models: spawned decode processes import this module with no Django set up
    from albums.storage import StorageUnavailableError, is_transient_io

    try:
        with default_storage.open(name, "rb") as fp:
            return fp.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if is_transient_io(exc):
            raise StorageUnavailableError(f"Could not read {name}: {exc}") from exc
        raise


def _decode(name: str, draft: tuple[int, int], alpha: bool = False, mask_name: str | None = None):
    """Decode a file from Django storage (any backend) in a pool thread."""
    data = _read(name)
    if data is None:
        return MISSING
    mask = (_read(mask_name) or b"") if mask_name else None
    return _decode_source(data, draft, alpha, mask)


def _submit(pool: Executor, name: str, draft: tuple[int, int], alpha: bool = False, mask_name: str | None = None) -> Future:
    if not isinstance(pool, ProcessPoolExecutor):
        return pool.submit(_decode, name, draft, alpha, mask_name)
    # Process workers get a path (or, for storages without one, the bytes): they know no Django.
    def source_of(stored: str) -> str | bytes | None:
        try:
            return default_storage.path(stored)
        except NotImplementedError:
            return _read(stored)

    source = source_of(name)
    if source is None:
        done: Future = Future()
        done.set_result(MISSING)
        return done
    mask = (source_of(mask_name) or b"") if mask_name else None
    return pool.submit(_decode_source, source, draft, alpha, mask)


def decode_workers() -> int:
    return settings.LOUPE_DECODE_WORKERS or os.cpu_count() or 1


def make_pool(kind: str | None = None, workers: int | None = None) -> Executor:
    kind = kind or settings.LOUPE_DECODE_POOL
    workers = workers or decode_workers()
    if kind == "process":
        # Spawned, not forked: forking a process that runs threads (Celery's pool, the encoder's)
        # can copy a held lock into the child, which then hangs forever (seen here in a test run).
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    raise ValueError(f"LOUPE_DECODE_POOL must be 'thread' or 'process', not {kind!r}")


# Decoding runs at most this many micro-batches ahead of the encoder: enough to keep it fed, and a
# bound on memory (a 256-image chunk of 12 MP photos would otherwise hold ~0.6 GB decoded at once).
READ_AHEAD_BATCHES = 2


def _decode_ahead(
    items: Sequence[tuple[int, str]], *, pool: Executor, draft, ahead: int, alpha: bool = False,
    masks: dict[int, str] | None = None,
):
    """Decoded images in the order of `items`, with at most `ahead` decodes in flight or waiting."""
    masks = masks or {}
    pending: deque = deque()
    source = iter(items)
    for image_id, name in islice(source, ahead):
        pending.append((image_id, _submit(pool, name, draft, alpha, masks.get(image_id))))
    while pending:
        image_id, future = pending.popleft()
        for next_id, next_name in islice(source, 1):
            pending.append((next_id, _submit(pool, next_name, draft, alpha, masks.get(next_id))))
        yield image_id, future.result()


def _micro_batches(decoded: Iterator[tuple[int, Image.Image | str]], size: int):
    batch: list[tuple[int, Image.Image | str]] = []
    for item in decoded:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def embed_stored_images(
    encoder,
    items: Sequence[tuple[int, str]],
    *,
    pool: Executor,
    draft: tuple[int, int] = DEFAULT_DRAFT,
    micro_batch: int | None = None,
    masks: dict[int, str] | None = None,
) -> Embedded:
    """items: (image_id, storage name). Vectors come back in the order of the decodable items.
    `masks`: image_id → storage name of its uploaded mask (masked pooling only)."""
    pooled = encoder if isinstance(encoder, PooledEncoder) else None
    wants_masks = bool(pooled and pooled.needs_alpha)
    micro_batch = _round_up(micro_batch or settings.LOUPE_ENCODE_BATCH_SIZE)
    decoded = _decode_ahead(items, pool=pool, draft=draft, ahead=READ_AHEAD_BATCHES * micro_batch,
                            alpha=wants_masks, masks=masks if wants_masks else None)
    result = Embedded()
    chunks: list[Pooled] = []
    for batch in _micro_batches(decoded, micro_batch):
        images = []
        for image_id, outcome in batch:
            if isinstance(outcome, str):
                result.failures[image_id] = outcome
            else:
                result.image_ids.append(image_id)
                images.append(outcome)
        if images:
            chunks.append(_encode_or_isolate(encoder, images, result, batch))
    result.vectors = np.concatenate([c.vectors for c in chunks]) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    if any(c.regions is not None for c in chunks):
        result.regions = np.concatenate([c.regions for c in chunks if c.regions is not None])
    if any(c.concepts is not None for c in chunks):
        result.concepts = np.concatenate([c.concepts for c in chunks if c.concepts is not None])
    notes = [note for c in chunks for note in c.notes]
    result.notes = {image_id: note for image_id, note in zip(result.image_ids, notes, strict=True) if note}
    return result


def _round_up(n: int) -> int:
    return max(ROW_MULTIPLE, -(-int(n) // ROW_MULTIPLE) * ROW_MULTIPLE)


def _pooled_fixed_shape(encoder, images: list) -> Pooled:
    """The encoder's pooled output with the forward batch padded to a multiple of ROW_MULTIPLE rows.
    `images` may hold `WithMask` entries (decoded with their uploaded masks)."""
    padded = _round_up(len(images))
    batch = list(images) + [images[-1]] * (padded - len(images))
    masks = [item.mask if isinstance(item, WithMask) else None for item in batch]
    batch = [item.image if isinstance(item, WithMask) else item for item in batch]
    if isinstance(encoder, PooledEncoder):
        out = encoder.embed(batch, batch_size=padded, masks=masks if any(m is not None for m in masks) else None)
    else:
        out = Pooled(vectors=encoder.encode_images(batch, batch_size=padded), notes=[""] * padded)
    n = len(images)
    return Pooled(vectors=out.vectors[:n], regions=None if out.regions is None else out.regions[:n], notes=out.notes[:n],
                  concepts=None if out.concepts is None else out.concepts[:n])


def encode_fixed_shape(encoder, images: list) -> np.ndarray:
    """encoder.encode_images with the forward batch padded to a multiple of ROW_MULTIPLE rows."""
    return _pooled_fixed_shape(encoder, images).vectors


def _empty(encoder) -> Pooled:
    return Pooled(vectors=np.zeros((0, encoder.dim), dtype=np.float32), notes=[])


def _concat(parts: list[Pooled], encoder) -> Pooled:
    if not parts:
        return _empty(encoder)
    regions = [p.regions for p in parts if p.regions is not None]
    concepts = [p.concepts for p in parts if p.concepts is not None]
    return Pooled(vectors=np.concatenate([p.vectors for p in parts]), regions=np.concatenate(regions) if regions else None,
                  notes=[note for p in parts for note in p.notes], concepts=np.concatenate(concepts) if concepts else None)


class EncoderOutOfMemoryError(Exception):
    """Out of memory even one image at a time: the chunk is retried later (another job may be
    holding the GPU), and no image is marked failed for it."""


def _out_of_memory(exc: BaseException) -> bool:
    import torch  # torch stays out of the web tier, which imports this module via workers.indexing

    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _encode_halving(encoder, images) -> Pooled:
    """Encode; out of memory, encode each half, down to one image, which then raises
    EncoderOutOfMemoryError: memory is not the image's fault."""
    try:
        return _pooled_fixed_shape(encoder, images)
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise
        if len(images) == 1:
            raise EncoderOutOfMemoryError(f"The encoder ran out of memory on one image: {exc}") from exc
        _release_device_memory()
    half = len(images) // 2
    return _concat([_encode_halving(encoder, images[:half]), _encode_halving(encoder, images[half:])], encoder)


def _release_device_memory() -> None:
    import torch  # torch stays out of the web tier, which imports this module via workers.indexing

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _encode_or_isolate(encoder, images, result: Embedded, batch) -> Pooled:
    """Encode a micro-batch; if the encoder rejects it, retry image by image so only the bad one fails.
    Running out of memory is not a rejection: the batch is halved instead (_encode_halving)."""
    try:
        return _encode_halving(encoder, images)
    except (OSError, ValueError, RuntimeError) as batch_error:
        if len(images) == 1:
            bad_id = result.image_ids.pop()
            result.failures[bad_id] = f"The encoder could not process the image: {batch_error}"
            return _empty(encoder)
    ok_ids = [image_id for image_id, outcome in batch if not isinstance(outcome, str)]
    del result.image_ids[-len(ok_ids):]
    parts = []
    for image_id, image in zip(ok_ids, images):
        try:
            parts.append(_encode_halving(encoder, [image]))
            result.image_ids.append(image_id)
        except (OSError, ValueError, RuntimeError) as exc:
            result.failures[image_id] = f"The encoder could not process the image: {exc}"
    return _concat(parts, encoder)
