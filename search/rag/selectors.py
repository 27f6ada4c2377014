"""Reads. Each getter answers "not found" alike for objects that are missing and for objects in
albums the user is not a member of; a member below the role gets RoleRequiredError."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from albums.errors import RoleRequiredError
from albums.roles import Role, role_at_least
from albums.selectors import role_subquery
from search.rag.errors import SupportClassNotFoundError, SupportImageNotFoundError, SupportSetNotFoundError
from search.rag.models import SupportClass, SupportImage, SupportSet


def _checked(obj, min_role: str):
    if not role_at_least(obj.role, min_role):
        raise RoleRequiredError(required=min_role, actual=obj.role)
    return obj


def support_set_list_for_user(*, user: AbstractBaseUser, album_id: int | None = None) -> QuerySet[SupportSet]:
    if not user.is_authenticated:
        return SupportSet.objects.none()
    sets = SupportSet.objects.filter(album__memberships__user=user)
    if album_id is not None:
        sets = sets.filter(album_id=album_id)
    return sets.annotate(
        role=role_subquery(user, "album"),
        class_count=Count("classes", distinct=True),
        # Counted on the denormalized set key: one count per image, not one per class join row.
        image_count=Count("classes__images", distinct=True),
    ).select_related("album")


def support_set_get_for_user(*, user: AbstractBaseUser, support_set_id: int, min_role: str = Role.VIEWER) -> SupportSet:
    if not user.is_authenticated:
        raise SupportSetNotFoundError()
    found = (
        SupportSet.objects.filter(pk=support_set_id, album__memberships__user=user)
        .annotate(role=role_subquery(user, "album"))
        .select_related("album")
        .first()
    )
    if found is None:
        raise SupportSetNotFoundError()
    return _checked(found, min_role)


def support_class_get_for_user(*, user: AbstractBaseUser, class_id: int, min_role: str = Role.VIEWER) -> SupportClass:
    if not user.is_authenticated:
        raise SupportClassNotFoundError()
    found = (
        SupportClass.objects.filter(pk=class_id, support_set__album__memberships__user=user)
        .annotate(role=role_subquery(user, "support_set__album"))
        .select_related("support_set__album")
        .first()
    )
    if found is None:
        raise SupportClassNotFoundError()
    return _checked(found, min_role)


def support_image_get_for_user(*, user: AbstractBaseUser, support_image_id: int, min_role: str = Role.VIEWER) -> SupportImage:
    if not user.is_authenticated:
        raise SupportImageNotFoundError()
    found = (
        SupportImage.objects.filter(pk=support_image_id, support_set__album__memberships__user=user)
        .annotate(role=role_subquery(user, "support_set__album"))
        .select_related("support_set__album", "support_class", "image")
        .first()
    )
    if found is None:
        raise SupportImageNotFoundError()
    return _checked(found, min_role)


def support_classes_with_images(*, support_set: SupportSet) -> list[SupportClass]:
    """Classes in display order, each with `support_images` (and their album images) prefetched."""
    from django.db.models import Prefetch

    images = SupportImage.objects.select_related("image").order_by("created_at", "id")
    return list(
        SupportClass.objects.filter(support_set=support_set)
        .prefetch_related(Prefetch("images", queryset=images, to_attr="support_images"))
        .order_by("position", "id")
    )


def support_set_status(*, support_set: SupportSet) -> dict:
    counts = dict(
        SupportImage.objects.filter(support_set=support_set).values_list("status").annotate(n=Count("pk")).order_by()
    )
    return {status: counts.get(status, 0) for status in SupportImage.Status.values}


def classes_without_ready_images(*, support_set: SupportSet) -> list[str]:
    return list(
        SupportClass.objects.filter(support_set=support_set)
        .annotate(ready=Count("images", filter=Q(images__status=SupportImage.Status.READY)))
        .filter(ready=0)
        .order_by("position", "id")
        .values_list("label", flat=True)
    )
