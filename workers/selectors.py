from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from albums.models import Album
from config.errors import NotFoundError
from workers.models import IndexJob


class JobNotFoundError(NotFoundError):
    code = "job_not_found"

    def __init__(self) -> None:
        super().__init__("Job not found.")


def job_get_for_user(*, user: AbstractBaseUser, job_id: int) -> IndexJob:
    if not user.is_authenticated:
        raise JobNotFoundError()
    job = IndexJob.objects.filter(pk=job_id, album__memberships__user=user).select_related("album").first()
    if job is None:
        raise JobNotFoundError()
    return job


def job_list_for_album(*, album: Album) -> QuerySet[IndexJob]:
    return IndexJob.objects.filter(album=album)
