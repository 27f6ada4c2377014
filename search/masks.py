"""Uploaded foreground masks for masked pooling: set or remove an image's mask.

A mask is any image Pillow reads (alpha, if present, is the mask; otherwise its grey levels, white =
foreground), stored as a mode-L PNG in the image's upright orientation. Setting or removing one
drops the image's vectors of masked-pooling models and starts an index job, so the album's search
picks up the new mask within one indexing round; a chunk that read the old mask meanwhile writes
nothing for that image (workers/indexing.py `_drop_remasked`).
"""

from __future__ import annotations

import io
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from albums.models import Album, Image, ImageMask
from config.errors import ApplicationError
from encoders.pooled_encoder import keep_alpha
from encoders.pooling import MASKED
from workers.indexing import index_job_start

logger = logging.getLogger(__name__)

MAX_MASK_PIXELS = 64_000_000
MASKED_MODELS = "%+pooling=masked%"


class MaskInvalidError(ApplicationError):
    code = "mask_invalid"


def _as_mask_png(data: bytes) -> bytes:
    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_MASK_PIXELS:
                raise MaskInvalidError(f"The mask is larger than {MAX_MASK_PIXELS:,} pixels.")
            opened.load()

            upright = keep_alpha(opened)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise MaskInvalidError(f"The mask is not a readable image: {exc}") from None
    mask = upright.getchannel("A") if upright.mode == "RGBA" else upright.convert("L")
    if mask.getextrema() == (0, 0):
        raise MaskInvalidError("The mask is empty: it marks no foreground (white or opaque = foreground).")
    out = io.BytesIO()
    mask.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _invalidate(image: Image) -> None:
    """Under the album's row lock (indexing chunks hold it FOR SHARE while they write): the image's
    masked vectors go, and an index job embeds it again."""
    album = Album.objects.select_for_update().get(pk=image.album_id)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM search_regionembedding WHERE image_id = %s AND model_id LIKE %s", [image.pk, MASKED_MODELS])
        cursor.execute("DELETE FROM search_embedding WHERE image_id = %s AND model_id LIKE %s", [image.pk, MASKED_MODELS])
        removed = cursor.rowcount
    if removed:
        Image.objects.filter(pk=image.pk, status=Image.Status.INDEXED).update(status=Image.Status.PENDING)
    if album.pooling == MASKED:
        transaction.on_commit(lambda: index_job_start(album=album, countdown=0))


@transaction.atomic
def image_mask_set(*, image: Image, data: bytes) -> ImageMask:
    png = _as_mask_png(data)
    mask, _ = ImageMask.objects.select_for_update().get_or_create(image=image)
    old_name = mask.file.name
    mask.file.save("mask.png", ContentFile(png), save=False)
    mask.save()  # updated_at moves: chunks that read the old mask skip this image
    if old_name and old_name != mask.file.name:
        _delete_later(old_name)
    _invalidate(image)
    return mask


@transaction.atomic
def image_mask_delete(*, image: Image) -> None:
    mask = ImageMask.objects.select_for_update().filter(image=image).first()
    if mask is None or not mask.file:
        return
    old_name = mask.file.name
    mask.file = ""
    mask.save()  # the row stays, file-less: its updated_at still fences off chunks in flight
    _delete_later(old_name)
    _invalidate(image)


def _delete_later(name: str) -> None:
    def delete() -> None:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete stored mask %s", name, exc_info=True)

    transaction.on_commit(delete)
