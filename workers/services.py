"""Background work on images, called by the thin Celery tasks in workers/tasks.py."""

from __future__ import annotations

import logging
from typing import Sequence

from django.conf import settings

from albums.imaging import make_thumbnail, read_metadata
from albums.models import Image
from albums.services import image_mark_failed, image_save_metadata

logger = logging.getLogger(__name__)

METADATA_CHUNK = 32


def image_metadata_enqueue(*, image_ids: Sequence[int]) -> None:
    from workers.tasks import image_process_metadata

    for start in range(0, len(image_ids), METADATA_CHUNK):
        image_process_metadata.delay(list(image_ids[start : start + METADATA_CHUNK]))


def image_process_metadata(*, image_ids: Sequence[int]) -> dict[str, int]:
    """EXIF, orientation-corrected size and a thumbnail for each image. An image that cannot be
    read is marked failed with the reason; the others carry on. Idempotent: a redelivered task
    recomputes the same values."""
    done = failed = 0
    for image in Image.objects.filter(pk__in=image_ids).order_by("pk"):
        try:
            with image.file.open("rb") as fp:
                metadata = read_metadata(fp)
                thumbnail = make_thumbnail(fp, size=settings.LOUPE_THUMBNAIL_SIZE)
        except FileNotFoundError:
            image_mark_failed(image_id=image.pk, reason="The stored file is missing.")
            failed += 1
            continue
        except (OSError, SyntaxError, ValueError) as exc:
            image_mark_failed(image_id=image.pk, reason=f"Could not read the image: {exc}")
            failed += 1
            continue
        image_save_metadata(image=image, metadata=metadata, thumbnail=thumbnail)
        done += 1
    return {"done": done, "failed": failed}
