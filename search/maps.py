"""The semantic map as the API serves it: the map of the album's current model (workers/maps.py
builds it) and, when asked, a support set's labels per point (search.rag answers through
search/hooks.py), all as columns.

Read in two steps so that a client polling an unchanged map costs a few small queries: `map_state`
(the map row, the latest map job, the count of images still off the map, the labels' version)
gives the ETag; `map_body` reads the points only when the client does not have them already.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from albums.models import Album
from search.hooks import PointLabels, point_labels
from workers.maps import map_unplaced_count
from workers.models import AlbumMap, IndexJob
from workers.selectors import map_clusters, map_columns, map_get, map_job_latest

NONE, BUILDING, READY = "none", "building", "ready"


@dataclass(frozen=True)
class MapState:
    album: Album
    model_id: str | None
    map: AlbumMap | None
    job: IndexJob | None
    unplaced: int
    labels: PointLabels | None

    @property
    def state(self) -> str:
        if self.map is not None:
            return READY
        if self.job is not None and self.job.is_active and self.job.model_id == self.model_id:
            return BUILDING
        return NONE

    @property
    def etag(self) -> str:
        parts = (self.album.pk, self.model_id, self.map and self.map.pk, self.map and self.map.updated_at.isoformat(),
                 self.job and (self.job.pk, self.job.status, self.job.done), self.unplaced,
                 self.labels and (self.labels.support_set_id, self.labels.version))
        return '"' + hashlib.sha256(repr(parts).encode()).hexdigest()[:32] + '"'


def map_state(*, user: AbstractBaseUser, album: Album, support_set_id: int | None = None) -> MapState:
    """The album's map under its current model, as `user` sees it (a member: the caller got the
    album through album_get_for_user). A support set must be one of this album's that the user can
    see, else the labeling layer's not-found (404)."""
    labels = None
    if support_set_id is not None:
        labels = point_labels(user=user, album_id=album.pk, support_set_id=support_set_id)
    model_id = album.active_model_id or None
    found = map_get(album=album, model_id=model_id) if model_id else None
    unplaced = map_unplaced_count(album_id=album.pk, model_id=model_id) if model_id else 0
    return MapState(album=album, model_id=model_id, map=found, job=map_job_latest(album=album), unplaced=unplaced,
                    labels=labels)


def job_summary(job: IndexJob | None) -> dict | None:
    if job is None:
        return None
    return {"id": job.pk, "kind": job.kind, "status": job.status, "done": job.done, "total": job.total,
            "message": job.message}


def map_body(state: MapState) -> dict:
    """The response body of GET …/map/ (contract in docs/architecture.md, "The semantic map")."""
    points = {"image_id": [], "x": [], "y": [], "cluster": [], "taken": []}
    clusters = []
    if state.map is not None:
        columns = map_columns(album=state.album, model_id=state.model_id)
        points = {"image_id": columns.image_id, "x": columns.x, "y": columns.y, "cluster": columns.cluster,
                  "taken": columns.taken}
        clusters = [{"id": c.cluster, "name": c.name, "terms": c.terms, "size": c.size, "x": c.x, "y": c.y,
                     "medoid_image_ids": c.medoid_image_ids} for c in map_clusters(album=state.album,
                                                                                  model_id=state.model_id)]
    body = {
        "album": state.album.pk,
        "model_id": state.model_id,
        "state": state.state,
        "job": job_summary(state.job),
        "fitted_at": state.map.fitted_at if state.map is not None else None,
        "count": len(points["image_id"]),
        "unplaced": state.unplaced,
        "clusters": clusters,
        "points": points,
    }
    if state.labels is not None:
        body["labels"] = state.labels.columns(points["image_id"])
    return body

