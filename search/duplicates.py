"""Near-duplicate groups: images whose vectors are at least `threshold` cosine-similar, grouped
transitively, by exact all-pairs in blocks of 1,024 rows (one matrix product each).

Bounded before any work: the threshold is 0.8 to 1 (below it "near-duplicate" means "similar" and
the pairs grow as n²), the album's size is counted before a vector is loaded, more than
LOUPE_DUPLICATES_MAX_PAIRS pairs stop the search with a 409 that says to raise the threshold, and
at most LOUPE_DUPLICATES_MAX_GROUPS groups (the largest first) come back.

Albums of up to LOUPE_DUPLICATES_INLINE_MAX images are answered in the request (seconds at most).
Larger ones, up to LOUPE_DUPLICATES_EXACT_MAX, are a scan: an IndexJob of kind `duplicates` on the
`default` queue, with progress (rows compared) and the groups as its result, so no web thread
holds a minute of matrix products.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from albums.models import Album, Image
from config.errors import ApplicationError, ConflictError
from search.selectors import album_vector_count, album_vectors
from search.services import AlbumNotIndexedError
from workers.models import IndexJob

THRESHOLD_MIN = 0.8
BLOCK_ROWS = 1024


@dataclass
class DuplicateGroups:
    threshold: float
    groups: list[list[dict]]
    total: int  # groups found; `groups` holds the largest LOUPE_DUPLICATES_MAX_GROUPS
    pairs: int

    def as_body(self) -> dict:
        return {**asdict(self), "count": len(self.groups), "truncated": self.total > len(self.groups)}


def check_threshold(threshold: float) -> None:
    if not THRESHOLD_MIN <= threshold <= 1:
        raise ApplicationError(f"threshold must be between {THRESHOLD_MIN} and 1.", code="invalid_threshold",
                               extra={"min": THRESHOLD_MIN, "max": 1})


def _album_model_id(album: Album) -> str:
    if not album.active_model_id:
        raise AlbumNotIndexedError()
    return album.active_model_id


def _too_large(count: int, limit: int, **extra) -> ConflictError:
    return ConflictError(
        f"This album has {count} images; near-duplicates are found for albums of up to {limit}.",
        code="album_too_large", extra={"images": count, "max_images": limit, **extra},
    )


def album_duplicates(*, album: Album, threshold: float) -> DuplicateGroups:
    """In the request, for albums of up to LOUPE_DUPLICATES_INLINE_MAX images; a larger one gets a 409
    whose `extra.scan` says to start a scan (duplicate_scan_start)."""
    check_threshold(threshold)
    model_id = _album_model_id(album)
    count = album_vector_count(album_id=album.pk, model_id=model_id)
    if count > settings.LOUPE_DUPLICATES_INLINE_MAX:
        if count <= settings.LOUPE_DUPLICATES_EXACT_MAX:
            raise _too_large(count, settings.LOUPE_DUPLICATES_INLINE_MAX, scan=True)
        raise _too_large(count, settings.LOUPE_DUPLICATES_EXACT_MAX, scan=False)
    ids, vectors = album_vectors(album_id=album.pk, model_id=model_id)
    return with_names(find_groups(ids, vectors, threshold=threshold))


def find_groups(ids: np.ndarray, vectors: np.ndarray, *, threshold: float,
                on_block: Callable[[int], None] | None = None) -> DuplicateGroups:
    """`on_block(rows_done)` after each block: progress, and a place to stop (it may raise)."""
    parent = np.arange(len(ids))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = 0
    for start in range(0, len(ids), BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS] @ vectors.T
        rows, cols = np.nonzero(block >= threshold)
        upper = start + rows < cols
        rows, cols = start + rows[upper], cols[upper]
        pairs += len(rows)
        if pairs > settings.LOUPE_DUPLICATES_MAX_PAIRS:
            raise ConflictError(
                f"More than {settings.LOUPE_DUPLICATES_MAX_PAIRS} image pairs are at least {threshold} similar: "
                "raise the threshold.", code="too_many_pairs", extra={"max_pairs": settings.LOUPE_DUPLICATES_MAX_PAIRS},
            )
        for i, c in zip(rows.tolist(), cols.tolist()):
            a, b = find(i), find(c)
            if a != b:
                parent[max(a, b)] = min(a, b)
        if on_block is not None:
            on_block(min(start + BLOCK_ROWS, len(ids)))
    groups: dict[int, list[int]] = {}
    for i in range(len(ids)):
        groups.setdefault(find(i), []).append(i)
    found = [members for members in groups.values() if len(members) > 1]
    found.sort(key=lambda members: (-len(members), int(ids[members[0]])))
    out = [_members(ids, vectors, members) for members in found[: settings.LOUPE_DUPLICATES_MAX_GROUPS]]
    return DuplicateGroups(threshold=threshold, groups=out, total=len(found), pairs=pairs)


def _members(ids: np.ndarray, vectors: np.ndarray, members: list[int]) -> list[dict]:
    """A group's images, each with its closest match inside the group (at or above the threshold by
    construction: that pair is what joined it), the closest first."""
    block = vectors[members] @ vectors[members].T
    np.fill_diagonal(block, -np.inf)
    best = block.max(axis=1)
    order = sorted(range(len(members)), key=lambda k: (-best[k], int(ids[members[k]])))
    return [{"image_id": int(ids[members[k]]), "similarity": round(float(best[k]), 4),
             "closest_image_id": int(ids[members[int(block[k].argmax())]])} for k in order]


def with_names(found: DuplicateGroups) -> DuplicateGroups:
    """Each member's file name, for people to tell them apart, and its size in pixels and bytes, from
    which the page picks the one to keep (the most pixels, then the most bytes)."""
    wanted = [member["image_id"] for group in found.groups for member in group]
    rows = {pk: (name, width, height, size) for pk, name, width, height, size in
            Image.objects.filter(pk__in=wanted).values_list("pk", "original_name", "width", "height", "bytes")}
    for group in found.groups:
        for member in group:
            name, width, height, size = rows.get(member["image_id"], ("", None, None, None))
            member.update(name=name, width=width, height=height, bytes=size)
    return found


# --- Scans: the same search as a job -----------------------------------------------------------------


def duplicate_scan_start(*, album: Album, user, threshold: float) -> tuple[IndexJob, bool]:
    """A queued or running scan of the album at this threshold is joined (False); else a new one is
    queued (True). Refused at once when the album is past LOUPE_DUPLICATES_EXACT_MAX."""
    from search.tasks import duplicate_scan_run as task  # cycle: search.tasks imports this module

    check_threshold(threshold)
    model_id = _album_model_id(album)
    count = album_vector_count(album_id=album.pk, model_id=model_id)
    if count > settings.LOUPE_DUPLICATES_EXACT_MAX:
        raise _too_large(count, settings.LOUPE_DUPLICATES_EXACT_MAX, scan=False)
    with transaction.atomic():
        Album.objects.select_for_update().filter(pk=album.pk).first()  # one scan per album and threshold
        running = IndexJob.objects.filter(album=album, kind=IndexJob.Kind.DUPLICATES, model_id=model_id,
                                          status__in=IndexJob.ACTIVE_STATUSES, params__threshold=threshold).first()
        if running is not None and not running.is_stale:
            return running, False
        if running is not None:  # its worker died: it would be joined for ever
            IndexJob.objects.filter(pk=running.pk).update(
                status=IndexJob.Status.FAILED, message="No sign of life from its worker; replaced.",
                finished_at=timezone.now())
        job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.DUPLICATES, model_id=model_id, total=count,
                                      generation=album.generation, created_by=user, params={"threshold": threshold})
        transaction.on_commit(lambda: task.delay(job.pk))
    return job, True


class _Cancelled(Exception):
    pass


def duplicate_scan_run(*, job_id: int) -> dict:
    """On a worker: load the vectors, compare block by block with progress, keep the groups as the
    job's result. A cancelled job stops at the next block; a refusal (too many pairs) fails the job
    with the reason."""
    claimed = IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.QUEUED).update(
        status=IndexJob.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now())
    if not claimed:
        return {"skipped": "not queued"}
    job = IndexJob.objects.get(pk=job_id)
    ids, vectors = album_vectors(album_id=job.album_id, model_id=job.model_id)

    def progress(rows_done: int) -> None:
        still = IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
            done=min(rows_done, job.total), heartbeat_at=timezone.now())
        if not still:
            raise _Cancelled()

    IndexJob.objects.filter(pk=job_id).update(total=len(ids))
    job.total = len(ids)
    try:
        found = with_names(find_groups(ids, vectors, threshold=job.params["threshold"], on_block=progress))
    except _Cancelled:
        return {"cancelled": job_id}
    except ApplicationError as exc:
        IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
            status=IndexJob.Status.FAILED, message=exc.message, finished_at=timezone.now())
        return {"failed": exc.code}
    IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
        status=IndexJob.Status.SUCCEEDED, done=len(ids), result=found.as_body(), finished_at=timezone.now(),
        message=f"{found.total} group(s), {found.pairs} pair(s)")
    return {"groups": found.total, "pairs": found.pairs}
