"""The semantic map: an album's vectors laid out in 2-D by UMAP, clustered, and the clusters named.

A map belongs to (album, model_id), like the vectors: an encoder switch builds the new model's map
beside the old one, and the old map goes once the new one is fitted. Every change is a job
(`IndexJob` of kind `map`, on the `default` queue, one per album at a time) that the jobs page,
the API and Flower show:

- a full fit (`refit`): every vector of the album under the model → UMAP (cosine) → [-1, 1]² →
  HDBSCAN clusters → names → one point per image (`MapPoint`), the clusters (`MapCluster`);
- a placement, queued after an index job finishes on an album that has a map: only the images with
  no point yet, placed against the fitted points (workers/map_layout.py: place) without moving
  anything; past LOUPE_MAP_REFIT_SHARE new images (of those fitted) it is a full fit instead.

An album without a map gets none by itself: the first one is asked for (`POST …/map/rebuild/`).
A fit costs seconds to minutes of CPU on the `default` worker, which every album's thumbnails
share, so it happens when someone wants to look.

The web tier imports this module (to start jobs); the numerical work lives in
workers/map_layout.py, which imports umap and scikit-learn inside its functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pgvector import Vector
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from albums.models import Album
from config.errors import ConflictError
from encoders.errors import EncoderError
from workers.models import AlbumMap, Embedding, ImageConcepts, IndexJob, MapCluster, MapPoint
from workers.vector_store import album_vectors_read

logger = logging.getLogger(__name__)

FIT_STEPS = 4  # vectors read, layout, clusters, names and rows written


class MapNotPossibleError(ConflictError):
    code = "album_not_indexed"

    def __init__(self) -> None:
        super().__init__("This album has no vectors to lay out yet: upload images and wait for indexing to finish.")


def map_job_active(*, album: Album) -> IndexJob | None:
    return IndexJob.objects.filter(album=album, kind=IndexJob.Kind.MAP, status__in=IndexJob.ACTIVE_STATUSES).first()


def map_build_start(*, album: Album, user=None, refit: bool = True) -> tuple[IndexJob, bool]:
    """Queue a map job for the album's current model: (job, True), or the map job already queued or
    running (job, False) — a queued placement asked to refit becomes a refit. A stalled one (its
    worker died) is failed and replaced."""
    model_id = album.active_model_id
    if not model_id or not Embedding.objects.filter(album=album, model_id=model_id).exists():
        raise MapNotPossibleError()
    with transaction.atomic():
        Album.objects.select_for_update().filter(pk=album.pk).first()
        active = map_job_active(album=album)
        if active is not None and active.is_stale:
            IndexJob.objects.filter(pk=active.pk).update(
                status=IndexJob.Status.FAILED, message="No sign of life from its worker; replaced.",
                finished_at=timezone.now())
            active = None
        if active is not None:
            if refit and active.status == IndexJob.Status.QUEUED and not active.params.get("refit"):
                active.params = {**active.params, "refit": True}
                active.save(update_fields=["params"])
            return active, False
        job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.MAP, model_id=model_id, total=FIT_STEPS,
                                      generation=album.generation, created_by=user, params={"refit": refit})
        transaction.on_commit(lambda: _send(job))
    return job, True


def _send(job: IndexJob) -> None:
    from workers.tasks import map_build  # cycle: workers.tasks imports this module

    try:
        result = map_build.delay(job.pk)
        IndexJob.objects.filter(pk=job.pk).update(celery_task_id=result.id)
    except Exception as exc:  # noqa: BLE001 — any broker failure: the job must not sit queued with no task
        logger.warning("map job %s could not be queued: %s", job.pk, exc)
        IndexJob.objects.filter(pk=job.pk, status__in=IndexJob.ACTIVE_STATUSES).update(
            status=IndexJob.Status.FAILED, finished_at=timezone.now(),
            message=f"Could not queue the map job (broker unavailable: {exc}).")


def map_refresh_after_index(*, album_id: int) -> IndexJob | None:
    """After an index job: place the new images on the album's map, or build the map of the model
    search switched to when the album had a map of another one. Albums that never had a map get none."""
    album = Album.objects.filter(pk=album_id).first()
    if album is None or not album.active_model_id:
        return None
    maps = set(AlbumMap.objects.filter(album=album).values_list("model_id", flat=True))
    if not maps:
        return None
    if album.active_model_id in maps and not map_unplaced_count(album_id=album.pk, model_id=album.active_model_id):
        return None
    try:
        job, _ = map_build_start(album=album, refit=album.active_model_id not in maps)
    except (MapNotPossibleError, IntegrityError):
        return None
    return job


def map_unplaced_count(*, album_id: int, model_id: str) -> int:
    """Images with a vector under the model and no point on its map yet."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM search_embedding e WHERE e.album_id = %s AND e.model_id = %s AND NOT EXISTS "
            "(SELECT 1 FROM workers_mappoint p WHERE p.image_id = e.image_id AND p.model_id = e.model_id)",
            [album_id, model_id])
        return cursor.fetchone()[0]


# --- the job, on a worker -----------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


def _step(job_id: int, done: int, message: str) -> None:
    still = IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
        done=done, message=message, heartbeat_at=timezone.now())
    if not still:
        raise _Cancelled()


def _finish(job_id: int, status: str, message: str, **fields) -> None:
    IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
        status=status, message=message[:4000], finished_at=timezone.now(), **fields)


def map_job_run(*, job_id: int) -> dict:
    """Fit or place, as the job says and the share of new images decides. Images whose indexing
    failed have no vector and are simply not on the map; a cancelled job stops at its next step and
    writes nothing."""
    from workers import map_layout  # umap and scikit-learn: loaded by the worker that runs a map job only

    now = timezone.now()
    claimed = IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.QUEUED).update(
        status=IndexJob.Status.RUNNING, started_at=now, heartbeat_at=now)
    if not claimed:
        return {"skipped": "not queued"}
    job = IndexJob.objects.select_related("album").get(pk=job_id)
    album, model_id = job.album, job.model_id
    try:
        ids = np.array(Embedding.objects.filter(album=album, model_id=model_id).order_by("image_id")
                       .values_list("image_id", flat=True), dtype=np.int64)
        if not len(ids):
            _finish(job_id, IndexJob.Status.FAILED, "The album has no vectors under this model any more "
                    "(its encoder changed, or its images were deleted).")
            return {"failed": "no vectors"}
        existing = AlbumMap.objects.filter(album=album, model_id=model_id).first()
        mapped = set(MapPoint.objects.filter(album=album, model_id=model_id).values_list("image_id", flat=True))
        new = np.array([i not in mapped for i in ids.tolist()], dtype=bool)
        refit = (job.params.get("refit") or existing is None
                 or (existing.placed_count + int(new.sum())) > settings.LOUPE_MAP_REFIT_SHARE * existing.fitted_count)
        if refit:
            result = _fit(job_id, album, model_id, *album_vectors_read(album_id=album.pk, model_id=model_id),
                          map_layout)
        else:
            result = _place(job_id, album, existing, ids, new, map_layout)
    except _Cancelled:
        return {"cancelled": job_id}
    except Exception as exc:  # noqa: BLE001 — a map that cannot be made must say why, not stay "running"
        logger.exception("map job %s failed", job_id)
        _finish(job_id, IndexJob.Status.FAILED, f"The map could not be made: {type(exc).__name__}: {exc}")
        return {"failed": type(exc).__name__}
    _drop_other_maps(album_id=album.pk)
    # Images indexed while this job ran found it active and were not queued: take them in now.
    map_refresh_after_index(album_id=album.pk)
    return result


def _fit(job_id: int, album: Album, model_id: str, ids: np.ndarray, vectors: np.ndarray, map_layout) -> dict:
    _step(job_id, 1, f"Laying out {len(ids)} images.")
    layout = map_layout.fit(vectors)
    _step(job_id, 2, "Finding clusters.")
    clusters = map_layout.cluster(layout.xy)
    _step(job_id, 3, "Naming the clusters.")
    found = _describe_clusters(album=album, model_id=model_id, ids=ids, vectors=vectors, xy=layout.xy,
                               clusters=clusters, map_layout=map_layout)
    now = timezone.now()
    with transaction.atomic():
        job = IndexJob.objects.select_for_update().get(pk=job_id)
        if job.status != IndexJob.Status.RUNNING:
            raise _Cancelled()
        MapPoint.objects.filter(album=album, model_id=model_id).delete()
        MapCluster.objects.filter(album=album, model_id=model_id).delete()
        _points_insert(album_id=album.pk, model_id=model_id, ids=ids, xy=layout.xy, clusters=clusters, placed=False)
        MapCluster.objects.bulk_create(
            MapCluster(album=album, model_id=model_id, cluster=c.cluster, name=c.name, terms=c.terms, size=c.size,
                       medoid_image_ids=c.medoids, x=c.x, y=c.y) for c in found)
        AlbumMap.objects.update_or_create(
            album=album, model_id=model_id,
            defaults={"fitted_at": now, "updated_at": now, "fitted_count": len(ids), "placed_count": 0,
                      "params": layout.params})
        message = f"Mapped {len(ids)} images in {len(found)} clusters ({int((clusters < 0).sum())} unclustered)."
        _finish(job_id, IndexJob.Status.SUCCEEDED, message, done=FIT_STEPS)
    return {"fitted": len(ids), "clusters": len(found)}


def _place(job_id: int, album: Album, existing: AlbumMap, ids: np.ndarray, new: np.ndarray, map_layout) -> dict:
    """Only the new images' vectors and those of (a sample of) the fitted points are read: at 100,000
    images, reading them all was most of a placement."""
    if not new.any():
        _finish(job_id, IndexJob.Status.SUCCEEDED, "Every image is on the map already.", done=FIT_STEPS)
        return {"placed": 0}
    _step(job_id, 1, f"Placing {int(new.sum())} new images.")
    # The fitted points stand for the fitted reducer: new images are placed against them only.
    rows = {image_id: (x, y, c) for image_id, x, y, c in MapPoint.objects.filter(
        album=album, model_id=existing.model_id, placed=False).values_list("image_id", "x", "y", "cluster")}
    fitted = np.array([i in rows for i in ids.tolist()], dtype=bool) & ~new
    anchor_ids = ids[fitted]
    if len(anchor_ids) < 2:  # every fitted image was deleted: nothing to place against
        return _fit(job_id, album, existing.model_id,
                    *album_vectors_read(album_id=album.pk, model_id=existing.model_id), map_layout)
    if len(anchor_ids) > map_layout.PLACE_ANCHORS:
        anchor_ids = np.sort(np.random.default_rng(0).choice(anchor_ids, map_layout.PLACE_ANCHORS, replace=False))
    anchor_xy = np.array([rows[i][:2] for i in anchor_ids.tolist()], dtype=np.float32).reshape(-1, 2)
    anchor_clusters = np.array([rows[i][2] for i in anchor_ids.tolist()], dtype=np.int64)
    read_ids, read = album_vectors_read(album_id=album.pk, model_id=existing.model_id,
                                        image_ids=np.concatenate([anchor_ids, ids[new]]).tolist())
    row_of = {image_id: k for k, image_id in enumerate(read_ids.tolist())}
    # Images deleted since the count have no vector to read: left out, as the insert would skip them.
    kept = np.array([i in row_of for i in anchor_ids.tolist()], dtype=bool)
    anchor_ids, anchor_xy, anchor_clusters = anchor_ids[kept], anchor_xy[kept], anchor_clusters[kept]
    anchor_rows = [row_of[i] for i in anchor_ids.tolist()]
    new_ids = np.array([i for i in ids[new].tolist() if i in row_of], dtype=np.int64)
    if not len(new_ids) or len(anchor_ids) < 2:
        _finish(job_id, IndexJob.Status.SUCCEEDED, "The new images were deleted meanwhile.", done=FIT_STEPS)
        return {"placed": 0}
    xy = map_layout.place(read[[row_of[i] for i in new_ids.tolist()]], anchor_vectors=read[anchor_rows],
                          anchor_xy=anchor_xy, params=existing.params)
    _step(job_id, 2, "Assigning clusters.")
    clusters = map_layout.nearest_clusters(xy, anchor_xy=anchor_xy, anchor_clusters=anchor_clusters)
    _step(job_id, 3, "Writing the points.")
    with transaction.atomic():
        job = IndexJob.objects.select_for_update().get(pk=job_id)
        if job.status != IndexJob.Status.RUNNING:
            raise _Cancelled()
        _points_insert(album_id=album.pk, model_id=existing.model_id, ids=new_ids, xy=xy, clusters=clusters,
                       placed=True)
        _cluster_sizes_update(album_id=album.pk, model_id=existing.model_id)
        AlbumMap.objects.filter(pk=existing.pk).update(placed_count=existing.placed_count + len(new_ids),
                                                      updated_at=timezone.now())
        _finish(job_id, IndexJob.Status.SUCCEEDED, f"Placed {len(new_ids)} new images without a refit.",
                done=FIT_STEPS)
    return {"placed": len(new_ids)}


def _points_insert(*, album_id: int, model_id: str, ids: np.ndarray, xy: np.ndarray, clusters: np.ndarray,
                   placed: bool) -> None:
    """One INSERT for any number of points; images deleted meanwhile (the join) and points another
    job wrote (the conflict) are skipped."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workers_mappoint (image_id, album_id, model_id, x, y, cluster, placed) "
            "SELECT p.image_id, %s, %s, p.x, p.y, p.cluster, %s "
            "FROM unnest(%s::bigint[], %s::float8[], %s::float8[], %s::int[]) AS p(image_id, x, y, cluster) "
            "JOIN albums_image i ON i.id = p.image_id "
            "ON CONFLICT (image_id, model_id) DO NOTHING",
            [album_id, model_id, placed, ids.tolist(), xy[:, 0].astype(float).tolist(),
             xy[:, 1].astype(float).tolist(), clusters.astype(int).tolist()])


def _cluster_sizes_update(*, album_id: int, model_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workers_mapcluster c SET size = s.n FROM (SELECT cluster, count(*) AS n FROM workers_mappoint "
            "WHERE album_id = %s AND model_id = %s GROUP BY cluster) s "
            "WHERE c.album_id = %s AND c.model_id = %s AND c.cluster = s.cluster",
            [album_id, model_id, album_id, model_id])


def _drop_other_maps(*, album_id: int) -> None:
    """Maps of models the album no longer searches go once its current model has one (like vectors)."""
    album = Album.objects.filter(pk=album_id).first()
    if album is None or not AlbumMap.objects.filter(album=album, model_id=album.active_model_id).exists():
        return
    with transaction.atomic():
        for model in (MapPoint, MapCluster, AlbumMap):
            model.objects.filter(album=album).exclude(model_id=album.active_model_id).delete()


# --- cluster names ----------------------------------------------------------------------------------

MEDOIDS = 3
TERMS = 3


@dataclass(frozen=True)
class ClusterInfo:
    cluster: int
    name: str
    terms: list[str]
    size: int
    medoids: list[int]
    x: float
    y: float


def _describe_clusters(*, album: Album, model_id: str, ids: np.ndarray, vectors: np.ndarray, xy: np.ndarray,
                       clusters: np.ndarray, map_layout) -> list[ClusterInfo]:
    """Each cluster's size, centre, the images nearest its mean vector, and terms: with a text
    encoder the bundled vocabulary's best matches for its mean vector; with ImageNet concepts
    stored (EfficientNet-Lite0) its dominant concepts; else none (the page shows its number)."""
    labels = sorted(int(c) for c in np.unique(clusters) if c >= 0)
    if not labels:
        return []
    means = np.stack([vectors[clusters == c].mean(axis=0) for c in labels])
    terms = _cluster_terms(album=album, model_id=model_id, ids=ids, clusters=clusters, labels=labels, means=means,
                           map_layout=map_layout)
    out = []
    for k, c in enumerate(labels):
        members = np.flatnonzero(clusters == c)
        closeness = vectors[members] @ means[k]
        medoids = ids[members[np.argsort(-closeness, kind="stable")[:MEDOIDS]]].tolist()
        centre = xy[members].mean(axis=0)
        words = terms[k] if terms else []
        out.append(ClusterInfo(cluster=c, name=", ".join(words[:2]), terms=words, size=len(members), medoids=medoids,
                               x=round(float(centre[0]), 4), y=round(float(centre[1]), 4)))
    return out


def _cluster_terms(*, album: Album, model_id: str, ids: np.ndarray, clusters: np.ndarray, labels: list[int],
                   means: np.ndarray, map_layout) -> list[list[str]] | None:
    concepts = _concept_means(album_id=album.pk, model_id=model_id, ids=ids, clusters=clusters, labels=labels)
    if concepts is not None:
        return map_layout.concept_terms(concepts, top=TERMS)
    try:
        return map_layout.vocabulary_terms(model_id=model_id, means=means, top=TERMS)
    except EncoderError as exc:  # weights gone since indexing: numbers are still a map
        logger.warning("map of album %s: clusters not named: %s", album.pk, exc)
        return None


def _concept_means(*, album_id: int, model_id: str, ids: np.ndarray, clusters: np.ndarray,
                   labels: list[int]) -> np.ndarray | None:
    """(clusters, 1000) mean ImageNet class probabilities, or None when the model keeps none.
    Averaged in PostgreSQL per cluster: a 100k album's rows are 100M probabilities, which parsed
    one row at a time in Python cost far more than the layout."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.cluster, avg(c.probabilities::vector)::text FROM {ImageConcepts._meta.db_table} c "
            "JOIN unnest(%s::bigint[], %s::int[]) AS m(image_id, cluster) ON m.image_id = c.image_id "
            "WHERE c.album_id = %s AND c.model_id = %s GROUP BY m.cluster",
            [ids.tolist(), clusters.tolist(), album_id, model_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    position = {c: k for k, c in enumerate(labels)}
    means = np.zeros((len(labels), 1000), dtype=np.float64)
    for cluster, mean in rows:
        if cluster in position:
            means[position[cluster]] = Vector.from_text(mean).to_numpy()
    return means
