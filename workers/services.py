"""Background work on images, called by the thin Celery tasks in workers/tasks.py."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Sequence

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from PIL import Image as PILImage

from albums.folder_import import count_files, folder_import
from albums.imaging import make_thumbnail, read_metadata
from albums.models import Image
from albums.services import image_mark_failed, image_save_metadata
from albums.storage import StorageUnavailableError, is_transient_io
from workers.indexing import index_job_start
from workers.models import IndexJob

logger = logging.getLogger(__name__)

METADATA_CHUNK = 32


# A queued metadata task marks its images in the shared cache until it ends, so the recovery sweep
# re-queues only images no task holds. The mark outlives any queue wait it should cover; a task lost
# with Redis loses its marks too, and its images are then re-queued, as they should be.
METADATA_MARK_SECONDS = 6 * 3600


def _metadata_mark(image_id: int) -> str:
    return f"loupe:metadata-queued:{image_id}"


def image_metadata_enqueue(*, image_ids: Sequence[int]) -> None:
    from workers.tasks import image_process_metadata  # cycle: workers.tasks imports this module

    for start in range(0, len(image_ids), METADATA_CHUNK):
        chunk = list(image_ids[start : start + METADATA_CHUNK])
        cache.set_many({_metadata_mark(pk): 1 for pk in chunk}, timeout=METADATA_MARK_SECONDS)
        image_process_metadata.delay(chunk)


def images_without_metadata_task(image_ids: Sequence[int]) -> list[int]:
    """Those of `image_ids` that no queued or running metadata task holds."""
    held = cache.get_many([_metadata_mark(pk) for pk in image_ids])
    return [pk for pk in image_ids if _metadata_mark(pk) not in held]


def metadata_marks_clear(image_ids: Sequence[int]) -> None:
    cache.delete_many([_metadata_mark(pk) for pk in image_ids])


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
        except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
            if is_transient_io(exc):  # the storage, not the file: the task retries, nothing is marked
                raise StorageUnavailableError(f"Could not read image {image.pk}: {exc}") from exc
            image_mark_failed(image_id=image.pk, reason=f"Could not read the image: {exc}")
            failed += 1
            continue
        image_save_metadata(image=image, metadata=metadata, thumbnail=thumbnail)
        done += 1
    return {"done": done, "failed": failed}


def folder_import_start(*, album, user, path: str):
    """Check the path now (so the caller gets a clear refusal) and import in the background."""

    from workers.tasks import folder_import_run  # cycle: workers.tasks imports this module

    total = count_files(path)
    task_id = str(uuid.uuid4())
    job = IndexJob.objects.create(
        album=album, kind=IndexJob.Kind.IMPORT, generation=album.generation, total=total, created_by=user,
        celery_task_id=task_id, message=f"Importing {total} file(s) from {path}.",
    )
    transaction.on_commit(lambda: folder_import_run.apply_async((job.pk, path), task_id=task_id))
    return job


def folder_import_job_run(*, job_id: int, path: str) -> dict:
    job = IndexJob.objects.select_related("album", "created_by").get(pk=job_id)
    if not job.is_active:
        return {"skipped": job.status}
    IndexJob.objects.filter(pk=job_id).update(status=IndexJob.Status.RUNNING, started_at=timezone.now())
    last = {"seen": 0, "rejected": 0}

    def progress(report, seen):
        rejected = len(report.rejected)
        IndexJob.objects.filter(pk=job_id).update(
            # Files added to the folder since it was counted raise the total rather than break done ≤ total.
            total=Greatest(F("total"), seen),
            done=F("done") + (seen - last["seen"]), failed=F("failed") + (rejected - last["rejected"]),
            heartbeat_at=timezone.now(),
        )
        last.update(seen=seen, rejected=rejected)

    try:
        report = folder_import(album=job.album, user=job.created_by, path=path, progress=progress)
    except Exception as exc:
        IndexJob.objects.filter(pk=job_id).update(status=IndexJob.Status.FAILED, finished_at=timezone.now(),
                                                  message=f"Import failed: {exc}"[:4000])
        raise
    skipped = "; ".join(f"{r.path}: {r.reason}" for r in report.rejected[:20])
    more = f" (and {len(report.rejected) - 20} more)" if len(report.rejected) > 20 else ""
    IndexJob.objects.filter(pk=job_id).update(
        status=IndexJob.Status.SUCCEEDED, finished_at=timezone.now(),
        message=f"{report.created} imported, {report.duplicates} already there, {len(report.rejected)} skipped."
        + (f" Skipped: {skipped}{more}" if report.rejected else ""),
    )
    return report.as_dict()


@dataclass(frozen=True)
class RetryOutcome:
    retried: int  # images set back to pending
    job_id: int | None  # the index job they joined; None when there was nothing to retry


def album_retry_failed(*, album, user=None) -> RetryOutcome:
    """Give the album's failed images another go: each is `pending` again, gets its metadata step
    when it has no thumbnail yet, and joins an index job. For images that failed for a cause that has
    passed (storage back, weights restored, a bug fixed); one that is still bad fails again, with
    its reason, and costs nothing else."""

    with transaction.atomic():
        failed = list(Image.objects.select_for_update().filter(album=album, status=Image.Status.FAILED)
                      .values_list("pk", "thumbnail"))
        ids = [pk for pk, _ in failed]
        Image.objects.filter(pk__in=ids).update(status=Image.Status.PENDING, failure_reason="")
        no_thumbnail = [pk for pk, thumbnail in failed if not thumbnail]
        if no_thumbnail:
            transaction.on_commit(lambda: image_metadata_enqueue(image_ids=no_thumbnail))
    job = None
    if ids:
        job, _ = index_job_start(album=album, user=user, countdown=0)
    return RetryOutcome(retried=len(ids), job_id=job.pk if job is not None else None)
