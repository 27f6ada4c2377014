"""Indexing: turning an album's images into vectors, and rebuilding them when the encoder changes.

A job runs in three steps, each a Celery task on the `encode` queue:
1. `index_job_run` loads the album's encoder, fixes the job's model_id and its scope (the album's
   images with no vector for that model), and queues the scope in chunks.
2. `index_batch_run` decodes a chunk on a CPU pool overlapped with the encoder and writes, in one
   transaction: the vectors (one INSERT), failed images with their reasons, the job's counters and
   an IndexJobBatch row. That row makes a redelivered chunk (acks_late after a worker died) a no-op.
3. `index_job_finish` runs when the last chunk is written: it switches the album's search to the
   new model (a rebuild writes beside the old vectors until then), deletes other models' vectors,
   and starts a follow-up job for images uploaded meanwhile.

Every write checks the album's generation under a row lock: a chunk of a job started before the
encoder changed writes nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from albums.models import Album, Image, ImageMask
from encoders.errors import EncoderError, EncoderWeightsMissing
from encoders.model_ids import parse_model_id
from encoders.pooled_encoder import PooledEncoder
from encoders.pooling import MASKED
from encoders.registry import get_encoder
from workers.models import Embedding
from workers.vector_store import (
    album_graph_ensure,
    album_graphs_prune,
    concepts_insert,
    embeddings_delete_model,
    embeddings_delete_other_models,
    embeddings_insert,
    hnsw_index_ensure,
    regions_insert,
)
from workers.fetching import active_fetch, fetch_state, last_fetch
from workers.maps import map_refresh_after_index
from workers.models import IndexJob, IndexJobBatch
from workers.pipeline import embed_stored_images, make_pool
from workers.selectors import rebuild_failure_get

logger = logging.getLogger(__name__)

SUPERSEDED = "Superseded: the album's encoder changed before this job finished."
# In the message of a job the broker refused; the recovery sweep (workers/recovery.py) restarts those.
BROKER_UNAVAILABLE = "broker unavailable"
# An index job whose encoder is downloading (a model fetch job) looks again this often.
FETCH_WAIT_SECONDS = 3
WAITING_FOR_WEIGHTS = "waiting_for_weights"


# --- starting, joining, cancelling ---------------------------------------------------------------


INDEXING_KINDS = (IndexJob.Kind.INDEX, IndexJob.Kind.REBUILD)


def active_index_jobs(album: Album):
    return IndexJob.objects.filter(album=album, kind__in=INDEXING_KINDS, status__in=IndexJob.ACTIVE_STATUSES)


def index_job_start(
    *, album: Album, user=None, kind: str = IndexJob.Kind.INDEX, countdown: float | None = None
) -> tuple[IndexJob, bool]:
    """Start a job for the album, or return the one already running (created=False).

    A job that stopped giving signs of life (its chunks lost with a broker that had no
    persistence, say) is failed with that reason and replaced, so the album never stays stuck."""
    active = active_index_jobs(album).first()
    if active is not None:
        if not active.is_stale:
            return active, False
        IndexJob.objects.filter(pk=active.pk, status__in=IndexJob.ACTIVE_STATUSES).update(
            status=IndexJob.Status.FAILED,
            finished_at=timezone.now(),
            message=f"Stalled: no progress for over {settings.LOUPE_JOB_STALE_SECONDS} s; a new job replaced it.",
        )
    task_id = str(uuid.uuid4())
    # A rebuild records what it rebuilds for: if it fails, the album says which encoder did not take.
    params = {"encoder_spec": album.encoder_spec} if kind == IndexJob.Kind.REBUILD else {}
    try:
        with transaction.atomic():
            job = IndexJob.objects.create(
                album=album, kind=kind, generation=album.generation, created_by=user, celery_task_id=task_id,
                params=params,
            )
    except IntegrityError:  # another request started one a moment ago
        return active_index_jobs(album).get(), False
    from workers.tasks import encode_index_job  # cycle: workers.tasks imports this module

    if countdown is None:
        countdown = settings.LOUPE_INDEX_DEBOUNCE_SECONDS if kind == IndexJob.Kind.INDEX else 0
    def send() -> None:
        try:
            encode_index_job.apply_async((job.pk,), task_id=task_id, countdown=countdown)
        except Exception as exc:  # noqa: BLE001 — any broker failure: the job must not sit queued with no task
            logger.warning("index job %s could not be queued: %s", job.pk, exc)
            _fail_job(job.pk, f"Could not queue the job ({BROKER_UNAVAILABLE}: {exc}); it is started again once the broker is back.")

    transaction.on_commit(send)
    return job, True


def _delete_partial_vectors(job: IndexJob, album: Album) -> None:
    """A cancelled rebuild leaves vectors of a model search does not use; they go with it."""
    if job.kind in INDEXING_KINDS and job.model_id and job.model_id != album.active_model_id:
        embeddings_delete_model(album_id=album.pk, model_id=job.model_id)


@transaction.atomic
def index_job_cancel(*, job: IndexJob, reason: str = "Cancelled.") -> IndexJob:
    album = Album.objects.select_for_update().get(pk=job.album_id)
    job = IndexJob.objects.select_for_update().get(pk=job.pk)
    if job.is_active:
        job.status = IndexJob.Status.CANCELLED
        job.message = reason
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "message", "finished_at"])
        _delete_partial_vectors(job, album)
    return job


def album_encoder_changed(*, album: Album, user=None) -> IndexJob:
    """Called (inside the transaction that bumped the generation) when an album gets a new encoder."""
    for job in active_index_jobs(album):
        index_job_cancel(job=job, reason=SUPERSEDED)
    job, _ = index_job_start(album=album, user=user, kind=IndexJob.Kind.REBUILD)
    return job


def rebuild_failure_dismiss(*, album: Album) -> int | None:
    """Stop showing the album's failed rebuild (workers.selectors.rebuild_failure_get): the id of the
    job dismissed, or None when there was none to dismiss."""
    job = rebuild_failure_get(album=album)
    if job is None:
        return None
    IndexJob.objects.filter(pk=job.pk, dismissed_at__isnull=True).update(dismissed_at=timezone.now())
    return job.pk


# --- step 1: scope -----------------------------------------------------------------------------


def index_job_fail(*, job_id: int, message: str) -> None:
    _fail_job(job_id, message)


def _fail_job(job_id: int, message: str) -> None:
    IndexJob.objects.filter(pk=job_id, status__in=IndexJob.ACTIVE_STATUSES).update(
        status=IndexJob.Status.FAILED, message=message[:4000], finished_at=timezone.now()
    )


def pending_scope(album: Album, model_id: str):
    has_vector = Embedding.objects.filter(image=OuterRef("pk"), model_id=model_id)
    return (
        Image.objects.filter(album=album)
        .exclude(status=Image.Status.FAILED)
        .filter(~Exists(has_vector))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def dispatch_batches(job_id: int, batches: list[list[int]]) -> None:
    from workers.tasks import encode_index_batch  # cycle: workers.tasks imports this module

    try:
        for seq, ids in enumerate(batches):
            encode_index_batch.delay(job_id, seq, ids)
    except Exception as exc:  # noqa: BLE001 — a broker outage mid-dispatch
        # Chunks already sent still write their vectors; the job ends now rather than wait to go
        # stale, and the recovery sweep (workers/recovery.py) plans the images that were not sent.
        logger.warning("index job %s: dispatch stopped: %s", job_id, exc)
        _fail_job(job_id, f"Dispatch stopped ({BROKER_UNAVAILABLE}: {exc}); the rest is indexed once the broker is back.")


def _kept_precision(album: Album) -> str | None:
    """The precision of the album's searchable vectors when this job adds to them (same encoder,
    pooling and storage), so that a new image joins them instead of re-embedding the album; None
    (this device's default) for a new album or a rebuild."""
    if not album.active_model_id:
        return None
    active = parse_model_id(album.active_model_id)
    if (active.spec, active.pooling, active.storage) != (album.encoder_spec, album.pooling, album.vector_storage):
        return None
    return active.precision


def _job_encoder(job: IndexJob):
    """(encoder, None), or (None, error code) after failing the job: missing weights or a bad
    spec will not fix themselves, so the job fails once, with the message, and is not retried.
    The encoder is the album's view of the loaded model (its pooling and storage): its model_id is
    what the job's vectors are stored under."""
    album = job.album
    try:
        segmenter = None
        if album.pooling == MASKED:
            # imports torch: the web tier imports this module to start and cancel jobs
            from encoders.segmenter import get_person_segmenter

            segmenter = get_person_segmenter()
        encoder = get_encoder(album.encoder_spec)
        return PooledEncoder(encoder, pooling=album.pooling, storage=album.vector_storage, segmenter=segmenter,
                             precision=_kept_precision(album)), None
    except EncoderWeightsMissing as exc:
        last = last_fetch(album.encoder_spec)
        failed = f" Their download failed: {last.message}" if last and last.status == IndexJob.Status.FAILED else ""
        _fail_job(job.pk, exc.message + failed)
        return None, exc.code
    except EncoderError as exc:
        _fail_job(job.pk, exc.message)
        return None, exc.code


def _wait_for_weights(job: IndexJob) -> None:
    """The album's encoder is downloading (workers/fetching.py): look again shortly, alive meanwhile."""
    from workers.tasks import encode_index_job  # cycle: workers.tasks imports this module

    fetch = active_fetch(job.album.encoder_spec)
    percent = f" ({fetch_state(fetch).percent} %)" if fetch is not None and fetch.total else ""
    IndexJob.objects.filter(pk=job.pk, status=IndexJob.Status.QUEUED).update(
        heartbeat_at=timezone.now(),
        message=f"Waiting for the weights of {job.album.encoder_spec} to download{percent}; indexing starts when they land.")
    encode_index_job.apply_async((job.pk,), countdown=FETCH_WAIT_SECONDS)


def index_job_run(*, job_id: int) -> dict:
    job = IndexJob.objects.select_related("album").get(pk=job_id)
    if not job.is_active:
        return {"skipped": job.status}
    if job.album.generation != job.generation:
        index_job_cancel(job=job, reason=SUPERSEDED)
        return {"skipped": "superseded"}
    # While a fetch job brings the encoder, the job waits for it rather than load (or, with
    # LOUPE_ALLOW_DOWNLOADS=true, download the same file a second time).
    encoder, error = (None, WAITING_FOR_WEIGHTS) if active_fetch(job.album.encoder_spec) else _job_encoder(job)
    if error == WAITING_FOR_WEIGHTS:
        _wait_for_weights(job)
        return {"waiting": job.album.encoder_spec}
    if encoder is None:
        return {"failed": error}
    hnsw_index_ensure(model_id=encoder.model_id, dim=encoder.dim)

    with transaction.atomic():
        album = Album.objects.select_for_update().get(pk=job.album_id)
        job = IndexJob.objects.select_for_update().get(pk=job_id)
        if not job.is_active or album.generation != job.generation:
            return {"skipped": "superseded"}
        if job.status == IndexJob.Status.RUNNING:
            # A redelivered job task: planning twice would send every chunk twice and overrun the
            # job's total. The chunks of the first plan are (or were) on their way.
            return {"skipped": "already planned"}
        active_has_vectors = bool(album.active_model_id) and Embedding.objects.filter(
            album=album, model_id=album.active_model_id
        ).exists()
        if not active_has_vectors and album.active_model_id != encoder.model_id:
            # Nothing to fall back on: search reads the new vectors as they arrive.
            album.active_model_id = encoder.model_id
            album.save(update_fields=["active_model_id"])
        scope = list(pending_scope(album, encoder.model_id))
        job.model_id = encoder.model_id
        job.total = len(scope)
        job.status = IndexJob.Status.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.message = f"{len(scope)} image(s) to embed with {encoder.model_id}."
        job.save(update_fields=["model_id", "total", "status", "started_at", "heartbeat_at", "message"])
        chunk = max(1, settings.LOUPE_INDEX_CHUNK)
        batches = [scope[i : i + chunk] for i in range(0, len(scope), chunk)]
        transaction.on_commit(lambda: dispatch_batches(job_id, batches))
    if not scope:
        index_job_finish(job_id=job_id)
    return {"total": len(scope), "batches": len(batches)}


# --- step 2: a chunk ---------------------------------------------------------------------------

_pool = None


def _decode_pool():
    # One pool per worker process, made on first use: a pool per chunk would pay its start-up
    # (processes: hundreds of ms) every time.
    global _pool
    if _pool is None:
        _pool = make_pool()
    return _pool


def index_batch_run(*, job_id: int, seq: int, image_ids: Sequence[int]) -> dict:
    job = IndexJob.objects.select_related("album").get(pk=job_id)
    if not job.is_active or job.album.generation != job.generation:
        return {"skipped": "inactive"}
    if IndexJobBatch.objects.filter(job_id=job_id, seq=seq).exists():
        return {"skipped": "already written"}
    encoder, error = _job_encoder(job)
    if encoder is None:
        return {"failed": error}
    if encoder.model_id != job.model_id:
        _fail_job(job_id, f"The encoder's weights changed during the job ({job.model_id} → {encoder.model_id}).")
        return {"failed": "model_changed"}

    started = time.perf_counter()
    chunk_started = _database_now()
    stored = dict(Image.objects.filter(pk__in=image_ids).values_list("pk", "file"))
    items = [(pk, stored[pk]) for pk in image_ids if pk in stored]  # deleted meanwhile: nothing to do
    masks = _uploaded_masks(image_ids) if encoder.needs_alpha else None
    embedded = embed_stored_images(encoder, items, pool=_decode_pool(), masks=masks)
    seconds = time.perf_counter() - started

    with transaction.atomic():
        with connection.cursor() as cursor:
            # FOR SHARE: chunks of one album write side by side, but never across an encoder change.
            cursor.execute("SELECT generation, active_model_id FROM albums_album WHERE id = %s FOR SHARE", [job.album_id])
            generation, active_model_id = cursor.fetchone()
        job = IndexJob.objects.select_for_update().get(pk=job_id)
        if not job.is_active or generation != job.generation:
            return {"skipped": "superseded"}
        if IndexJobBatch.objects.filter(job=job, seq=seq).exists():
            return {"skipped": "already written"}
        if encoder.needs_alpha:
            _drop_remasked(embedded, since=chunk_started)
        embeddings_insert(model_id=job.model_id, image_ids=embedded.image_ids, vectors=embedded.vectors, notes=embedded.notes)
        if embedded.regions is not None:
            regions_insert(model_id=job.model_id, image_ids=embedded.image_ids, regions=embedded.regions)
        if embedded.concepts is not None:
            concepts_insert(model_id=job.model_id, image_ids=embedded.image_ids, concepts=embedded.concepts)
        for image_id, reason in embedded.failures.items():
            Image.objects.filter(pk=image_id).update(status=Image.Status.FAILED, failure_reason=reason[:2000])
        if job.model_id == active_model_id:
            Image.objects.filter(pk__in=embedded.image_ids).exclude(status=Image.Status.INDEXED).update(
                status=Image.Status.INDEXED
            )
        IndexJobBatch.objects.create(
            job=job, seq=seq, images=len(image_ids), failed=len(embedded.failures), seconds=seconds
        )
        job.done += len(image_ids)
        job.failed += len(embedded.failures)
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["done", "failed", "heartbeat_at"])
        finished = job.done >= job.total
    if finished:
        index_job_finish(job_id=job_id)
    return {"written": len(embedded.image_ids), "failed": len(embedded.failures), "seconds": round(seconds, 3)}


def _database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _uploaded_masks(image_ids: Sequence[int]) -> dict[int, str]:
    return dict(ImageMask.objects.filter(image_id__in=image_ids).exclude(file="").values_list("image_id", "file"))


def _drop_remasked(embedded, *, since) -> None:
    """Leave out images whose mask was set or removed after this chunk read it: the mask service
    deleted their vectors (under the album lock this transaction now holds FOR SHARE), and the
    follow-up job embeds them again with the new mask."""
    changed = set(ImageMask.objects.filter(image_id__in=embedded.image_ids, updated_at__gt=since)
                  .values_list("image_id", flat=True))
    if not changed:
        return
    keep = [i for i, image_id in enumerate(embedded.image_ids) if image_id not in changed]
    embedded.image_ids = [embedded.image_ids[i] for i in keep]
    embedded.vectors = embedded.vectors[keep]
    if embedded.regions is not None:
        embedded.regions = embedded.regions[keep]
    if embedded.concepts is not None:
        embedded.concepts = embedded.concepts[keep]
    embedded.notes = {k: v for k, v in embedded.notes.items() if k not in changed}


# --- step 3: the switch ------------------------------------------------------------------------


def _album_graph_before_switch(job_id: int) -> None:
    """Give a large album its own HNSW graph of the job's vectors before search switches to them
    (workers/vector_store.py: album_graph_ensure). Outside any transaction; a failure to build it
    leaves search on the model's graph or an exact scan, never the job failed."""
    job = IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).first()
    if job is None or not job.model_id:
        return
    dim = Embedding.objects.filter(album_id=job.album_id, model_id=job.model_id).values_list("dim", flat=True).first()
    if dim is None:
        return
    try:
        album_graph_ensure(album_id=job.album_id, model_id=job.model_id, dim=dim)
    except DatabaseError:
        logger.warning("album %s: its own HNSW graph could not be built; search uses the model's", job.album_id,
                       exc_info=True)


def index_job_finish(*, job_id: int) -> None:
    _album_graph_before_switch(job_id)
    with transaction.atomic():
        album = Album.objects.select_for_update().get(pk=IndexJob.objects.values_list("album_id", flat=True).get(pk=job_id))
        job = IndexJob.objects.select_for_update().get(pk=job_id)
        if job.status != IndexJob.Status.RUNNING:
            return
        if album.generation != job.generation:
            index_job_cancel(job=job, reason=SUPERSEDED)
            return
        switched = album.active_model_id != job.model_id
        if switched:
            album.active_model_id = job.model_id
            album.save(update_fields=["active_model_id"])
        has_vector = Embedding.objects.filter(image=OuterRef("pk"), model_id=job.model_id)
        Image.objects.filter(album=album).exclude(status=Image.Status.FAILED).filter(Exists(has_vector)).exclude(
            status=Image.Status.INDEXED
        ).update(status=Image.Status.INDEXED)
        removed = embeddings_delete_other_models(album_id=album.pk, keep_model_id=job.model_id)
        job.status = IndexJob.Status.SUCCEEDED
        job.finished_at = timezone.now()
        parts = [f"{job.done - job.failed} embedded, {job.failed} failed."]
        if switched:
            parts.append(f"Search now uses {job.model_id}.")
        if removed:
            parts.append(f"Removed {removed} vector(s) of the previous model.")
        job.message = " ".join(parts)
        job.save(update_fields=["status", "finished_at", "message"])
        transaction.on_commit(lambda: _follow_up(album.pk))


def _follow_up(album_id: int) -> None:
    """Images uploaded while the job ran joined it without being in its scope: index them now. The
    album's graph of a model it no longer searches goes. With nothing left to index, the album's
    semantic map (if it has one) takes the new images in, or is built for the model search switched to."""
    try:
        album_graphs_prune(album_id=album_id)
    except DatabaseError:
        logger.warning("album %s: could not drop its graphs of older models", album_id, exc_info=True)
    album = Album.objects.get(pk=album_id)
    if album.active_model_id and pending_scope(album, album.active_model_id).exists():
        index_job_start(album=album, kind=IndexJob.Kind.INDEX, countdown=0)
    else:
        map_refresh_after_index(album_id=album_id)
