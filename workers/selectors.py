from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet

from albums.models import Album
from albums.roles import Role
from albums.selectors import get_for_user, member_rows
from config.errors import NotFoundError
from workers.models import AlbumMap, IndexJob, MapCluster


class JobNotFoundError(NotFoundError):
    code = "job_not_found"

    def __init__(self) -> None:
        super().__init__("Job not found.")


def job_get_for_user(*, user: AbstractBaseUser, job_id: int, min_role: str = Role.VIEWER) -> IndexJob:
    return get_for_user(IndexJob.objects.select_related("album"), user=user, pk=job_id, album_path="album",
                        not_found=JobNotFoundError, min_role=min_role)


def job_list_for_user(*, user: AbstractBaseUser) -> QuerySet[IndexJob]:
    """Every job of the user's albums; staff see all (the jobs page)."""
    if user.is_authenticated and user.is_staff:
        return IndexJob.objects.all()
    return member_rows(IndexJob.objects.all(), user=user, album_path="album")


def job_list_for_album(*, album: Album) -> QuerySet[IndexJob]:
    return IndexJob.objects.filter(album=album)


def rebuild_failure_get(*, album: Album) -> IndexJob | None:
    """The album's latest rebuild when it failed and nobody dismissed it yet: the album then still
    searches its old vectors under a new encoder setting. A later rebuild (or its success) replaces it."""
    last = (IndexJob.objects.filter(album=album, kind=IndexJob.Kind.REBUILD).order_by("-created_at", "-pk")
            .only("pk", "status", "dismissed_at", "params", "message", "finished_at", "album_id").first())
    if last is None or last.status != IndexJob.Status.FAILED or last.dismissed_at is not None:
        return None
    return last


# --- the semantic map ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapColumns:
    """An album map's points as columns, ordered by image id: what the map API sends as they are."""

    image_id: list[int]
    x: list[float]
    y: list[float]
    cluster: list[int]
    taken: list[int | None]  # capture time, unix seconds


def map_get(*, album: Album, model_id: str) -> AlbumMap | None:
    return AlbumMap.objects.filter(album=album, model_id=model_id).first()


def map_job_latest(*, album: Album) -> IndexJob | None:
    return IndexJob.objects.filter(album=album, kind=IndexJob.Kind.MAP).order_by("-created_at", "-pk").first()


def map_clusters(*, album: Album, model_id: str) -> list[MapCluster]:
    return list(MapCluster.objects.filter(album=album, model_id=model_id).order_by("cluster"))


def map_columns(*, album: Album, model_id: str) -> MapColumns:
    """One statement, rows straight into columns: no model instance per point (100,000 of them
    would cost more than the query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.image_id, round(p.x::numeric, 4)::float8, round(p.y::numeric, 4)::float8, p.cluster, "
            "extract(epoch FROM i.taken_at)::bigint FROM workers_mappoint p JOIN albums_image i ON i.id = p.image_id "
            "WHERE p.album_id = %s AND p.model_id = %s ORDER BY p.image_id", [album.pk, model_id])
        rows = cursor.fetchall()
    if not rows:
        return MapColumns([], [], [], [], [])
    image_id, x, y, cluster, taken = (list(column) for column in zip(*rows))
    return MapColumns(image_id=image_id, x=x, y=y, cluster=cluster, taken=taken)
