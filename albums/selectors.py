"""Reads. Every selector takes the acting user and answers "not found" for albums that are
missing and for albums the user is not a member of alike."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber

from albums.errors import AlbumNotFoundError, ImageNotFoundError, RoleRequiredError
from config.errors import ApplicationError
from albums.models import Album, AlbumMembership, Image
from albums.roles import Role, role_at_least


def role_subquery(user: AbstractBaseUser, album_path: str = "pk") -> Subquery:
    """The user's role on the album at `album_path` of the outer query (None for non-members)."""
    return Subquery(AlbumMembership.objects.filter(album=OuterRef(album_path), user=user).values("role")[:1])


def member_rows(queryset: QuerySet, *, user: AbstractBaseUser, album_path: str = "") -> QuerySet:
    """The rows of `queryset` in albums the user is a member of, each with the user's `role`.
    `album_path`: the lookup from a row to its album ("" when the rows are albums)."""
    if not user.is_authenticated:
        return queryset.none()
    prefix = f"{album_path}__" if album_path else ""
    # The role comes from the membership row the filter already joined (one per album and user, a
    # unique constraint), not from a second lookup: this runs on every request that names an album.
    return queryset.filter(**{f"{prefix}memberships__user": user}).annotate(role=F(f"{prefix}memberships__role"))


def get_for_user(queryset: QuerySet, *, user: AbstractBaseUser, pk: int, album_path: str = "",
                 not_found: Callable[[], Exception], min_role: str = Role.VIEWER):
    """The one membership check every `*_get_for_user` is built on (API and pages alike): the row
    with this pk, if its album has the user as a member at `min_role` or above. A missing row and a
    row in someone else's album raise the same `not_found`, so nobody learns another's album
    exists; a member below the role gets RoleRequiredError."""
    found = member_rows(queryset, user=user, album_path=album_path).filter(pk=pk).first()
    if found is None:
        raise not_found()
    if not role_at_least(found.role, min_role):
        raise RoleRequiredError(required=min_role, actual=found.role)
    return found


def album_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Album]:
    """Albums the user is a member of (own and shared), each with `role` and `image_count`."""
    if not user.is_authenticated:
        return Album.objects.none()
    return (
        Album.objects.filter(memberships__user=user)
        .annotate(role=role_subquery(user), image_count=Count("images", distinct=True))
        .select_related("owner")
        .order_by("-created_at", "-id")  # Meta.ordering does not survive the GROUP BY
    )


def album_get_for_user(*, user: AbstractBaseUser, album_id: int, min_role: str = Role.VIEWER) -> Album:
    """The album with `role` set, or AlbumNotFoundError; RoleRequiredError when a member lacks min_role."""
    return get_for_user(Album.objects.select_related("owner"), user=user, pk=album_id, not_found=AlbumNotFoundError,
                        min_role=min_role)


def image_get_for_user(*, user: AbstractBaseUser, image_id: int, min_role: str = Role.VIEWER) -> Image:
    return get_for_user(Image.objects.select_related("album"), user=user, pk=image_id, album_path="album",
                        not_found=ImageNotFoundError, min_role=min_role)


def image_visible_to(*, user: AbstractBaseUser, image_id: int) -> bool:
    """Whether the user is a member of the image's album: one indexed EXISTS, no row loaded (a search
    by `image_id` needs only this)."""
    if not user.is_authenticated:
        return False
    albums = AlbumMembership.objects.filter(user=user).values("album_id")
    return Image.objects.filter(pk=image_id, album_id__in=albums).exists()


# How an album's images may be ordered: by upload ("added") or by EXIF capture time ("taken"), newest
# first with a leading minus. Images without a capture time come last either way; ties go by id in
# the sort's direction, so paging is stable.
IMAGE_SORTS = {
    "-added": (F("created_at").desc(), F("id").desc()),
    "added": (F("created_at").asc(), F("id").asc()),
    "-taken": (F("taken_at").desc(nulls_last=True), F("id").desc()),
    "taken": (F("taken_at").asc(nulls_last=True), F("id").asc()),
}
DEFAULT_IMAGE_SORT = "-added"


class ImageSortInvalidError(ApplicationError):
    code = "invalid_sort"

    def __init__(self, sort: object) -> None:
        super().__init__(f"Unknown sort {str(sort)[:40]!r}; use one of {', '.join(IMAGE_SORTS)}.",
                         extra={"parameter": "sort", "allowed": list(IMAGE_SORTS)})


def image_list(*, album: Album, status: str | None = None, sort: str = DEFAULT_IMAGE_SORT) -> QuerySet[Image]:
    """The album's images in `sort` order (IMAGE_SORTS; an unknown one is ImageSortInvalidError)."""
    if sort not in IMAGE_SORTS:
        raise ImageSortInvalidError(sort)
    images = Image.objects.filter(album=album)
    if status:
        images = images.filter(status=status)
    return images.order_by(*IMAGE_SORTS[sort])


def image_list_by_ids(*, album: Album, image_ids: list[int]) -> tuple[list[Image], list[int]]:
    """The album's images among `image_ids`, in the order asked, and the ids that are not images of
    this album (missing or another album's: the same to the caller)."""
    found = {image.pk: image for image in Image.objects.filter(album=album, pk__in=image_ids)}
    return [found[pk] for pk in image_ids if pk in found], [pk for pk in image_ids if pk not in found]


def membership_list(*, album: Album) -> QuerySet[AlbumMembership]:
    return AlbumMembership.objects.filter(album=album).select_related("user").order_by("created_at", "id")


def album_covers(*, album_ids: list[int], per_album: int = 4) -> dict[int, list[int]]:
    """The newest few image ids of each album (one query), for the album list's cover mosaics."""
    rows = (Image.objects.filter(album_id__in=album_ids).exclude(status=Image.Status.FAILED)
            .annotate(rank=Window(RowNumber(), partition_by=[F("album_id")], order_by=[F("created_at").desc(), F("id").desc()]))
            .filter(rank__lte=per_album).order_by("album_id", "rank").values_list("album_id", "pk"))
    covers: dict[int, list[int]] = {}
    for album_id, image_id in rows:
        covers.setdefault(album_id, []).append(image_id)
    return covers
