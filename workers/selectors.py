from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from albums.models import Album
from albums.roles import Role
from albums.selectors import get_for_user, member_rows
from config.errors import NotFoundError
from workers.models import IndexJob


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
