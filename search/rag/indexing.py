"""Worker side: support images → patch vectors in pgvector.

Each support image is written in its own transaction under a lock on the set row: when the set's
generation moved on (its encoder or patch settings changed) the write is dropped, and a new
generation's task writes instead. The image's rows of any other settings are deleted in the same
transaction, so a reader sees either the old patches or the new, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from PIL import UnidentifiedImageError

from encoders.errors import EncoderError
from encoders.images import open_rgb
from encoders.registry import get_encoder
from search.rag.models import PatchEmbedding, SupportImage, SupportSet
from search.rag.patches import PatchGrid, image_patches

logger = logging.getLogger(__name__)


def model_key(encoder, support_set: SupportSet) -> str:
    return f"{encoder.model_id}|{support_set.settings_key}"


def _compute(encoder, support_set: SupportSet, support_image: SupportImage) -> PatchGrid:
    with support_image.image.file.open("rb") as fp:
        picture = open_rgb(fp)
    return image_patches(
        encoder,
        picture,
        resolution=support_set.support_resolution,
        patch_size=support_set.patch_size,
        source=support_set.patch_source,
    )


def _write(support_set_id: int, generation: int, support_image: SupportImage, key: str, grid: PatchGrid) -> bool:
    with transaction.atomic():
        current = SupportSet.objects.select_for_update().get(pk=support_set_id)
        if current.generation != generation:
            return False
        if not SupportImage.objects.filter(pk=support_image.pk).exists():  # removed meanwhile
            return False
        PatchEmbedding.objects.filter(support_image=support_image).delete()
        PatchEmbedding.objects.bulk_create(
            PatchEmbedding(
                support_image=support_image,
                support_class_id=support_image.support_class_id,
                model_key=key,
                row=patch.row,
                col=patch.col,
                x0=patch.box[0],
                y0=patch.box[1],
                x1=patch.box[2],
                y1=patch.box[3],
                dim=int(patch.vector.shape[0]),
                vector=patch.vector,
            )
            for patch in grid.patches
        )
        SupportImage.objects.filter(pk=support_image.pk).update(
            status=SupportImage.Status.READY, failure_reason="", patch_count=len(grid.patches)
        )
    return True


def _fail(support_image_id: int, reason: str) -> None:
    SupportImage.objects.filter(pk=support_image_id).update(status=SupportImage.Status.FAILED, failure_reason=reason)


def support_patches_compute(*, support_set_id: int, generation: int, support_image_ids: Sequence[int], encoder=None) -> dict:
    """Embed the patches of these support images. One bad image is recorded with its reason and
    never stops the others; a missing model fails them all with the same clear reason."""
    support_set = SupportSet.objects.filter(pk=support_set_id).first()
    if support_set is None or support_set.generation != generation:
        return {"skipped": "superseded"}
    if encoder is None:
        try:
            encoder = get_encoder(support_set.encoder_spec)
        except EncoderError as exc:
            SupportImage.objects.filter(pk__in=support_image_ids, support_set_id=support_set_id).update(
                status=SupportImage.Status.FAILED, failure_reason=exc.message
            )
            return {"failed": len(support_image_ids), "reason": exc.message}
    key = model_key(encoder, support_set)
    written = failed = 0
    for support_image in SupportImage.objects.filter(pk__in=support_image_ids, support_set_id=support_set_id).select_related("image"):
        try:
            grid = _compute(encoder, support_set, support_image)
        except Exception as exc:  # noqa: BLE001 — any decode or model error is this image's reason, not the batch's
            logger.warning("support image %s failed: %s", support_image.pk, exc)
            _fail(support_image.pk, _reason(exc))
            failed += 1
            continue
        if _write(support_set_id, generation, support_image, key, grid):
            written += 1
    return {"written": written, "failed": failed, "model_key": key}


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "The image file is missing from storage."
    if isinstance(exc, UnidentifiedImageError | OSError | SyntaxError | ValueError):
        return f"The image could not be decoded: {exc}"
    return f"{type(exc).__name__}: {exc}"


def stale_support_images(*, support_set: SupportSet, key: str) -> list[int]:
    """Support images of the set without patches of this key that have not failed: what a
    classification has to embed first (a task still queued, or a worker that died)."""
    have = PatchEmbedding.objects.filter(support_image__support_set=support_set, model_key=key).values("support_image")
    return list(
        SupportImage.objects.filter(support_set=support_set)
        .exclude(status=SupportImage.Status.FAILED)
        .exclude(pk__in=have)
        .values_list("pk", flat=True)
    )
