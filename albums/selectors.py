"""Reads. Every selector takes the acting user and answers "not found" for albums that are
missing and for albums the user is not a member of alike."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, OuterRef, QuerySet, Subquery

from albums.errors import AlbumNotFoundError, ImageNotFoundError, RoleRequiredError
from albums.models import Album, AlbumMembership, Image
from albums.roles import Role, role_at_least


def role_subquery(user: AbstractBaseUser, album_path: str = "pk") -> Subquery:
    """The user's role on the album at `album_path` of the outer query (None for non-members)."""
    return Subquery(AlbumMembership.objects.filter(album=OuterRef(album_path), user=user).values("role")[:1])


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
    if not user.is_authenticated:
        raise AlbumNotFoundError()
    album = (
        Album.objects.filter(pk=album_id, memberships__user=user)
        .annotate(role=role_subquery(user))
        .select_related("owner")
        .first()
    )
    if album is None:
        raise AlbumNotFoundError()
    if not role_at_least(album.role, min_role):
        raise RoleRequiredError(required=min_role, actual=album.role)
    return album


def image_get_for_user(*, user: AbstractBaseUser, image_id: int, min_role: str = Role.VIEWER) -> Image:
    if not user.is_authenticated:
        raise ImageNotFoundError()
    image = (
        Image.objects.filter(pk=image_id, album__memberships__user=user)
        .annotate(role=role_subquery(user, "album"))
        .select_related("album")
        .first()
    )
    if image is None:
        raise ImageNotFoundError()
    if not role_at_least(image.role, min_role):
        raise RoleRequiredError(required=min_role, actual=image.role)
    return image


def image_visible_to(*, user: AbstractBaseUser, image_id: int) -> bool:
    """Whether the user is a member of the image's album: one indexed EXISTS, no row loaded (a search
    by `image_id` needs only this)."""
    if not user.is_authenticated:
        return False
    albums = AlbumMembership.objects.filter(user=user).values("album_id")
    return Image.objects.filter(pk=image_id, album_id__in=albums).exists()


def image_list(*, album: Album, status: str | None = None) -> QuerySet[Image]:
    images = Image.objects.filter(album=album)
    if status:
        images = images.filter(status=status)
    return images


def membership_list(*, album: Album) -> QuerySet[AlbumMembership]:
    return AlbumMembership.objects.filter(album=album).select_related("user").order_by("created_at", "id")
