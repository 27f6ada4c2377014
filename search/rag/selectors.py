"""Reads. Each getter answers "not found" alike for objects that are missing and for objects in
albums the user is not a member of; a member below the role gets RoleRequiredError."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Prefetch, Q, QuerySet

from albums.roles import Role
from albums.selectors import get_for_user, member_rows
from search.rag.errors import LabelNotFoundError, SupportClassNotFoundError, SupportImageNotFoundError, SupportSetNotFoundError
from search.rag.models import Label, SupportClass, SupportImage, SupportSet


def support_set_list_for_user(*, user: AbstractBaseUser, album_id: int | None = None) -> QuerySet[SupportSet]:
    sets = member_rows(SupportSet.objects.all(), user=user, album_path="album")
    if album_id is not None:
        sets = sets.filter(album_id=album_id)
    return sets.annotate(
        class_count=Count("classes", distinct=True),
        # Counted on the denormalized set key: one count per image, not one per class join row.
        image_count=Count("classes__images", distinct=True),
    ).select_related("album")


def support_set_get_for_user(*, user: AbstractBaseUser, support_set_id: int, min_role: str = Role.VIEWER) -> SupportSet:
    return get_for_user(SupportSet.objects.select_related("album"), user=user, pk=support_set_id, album_path="album",
                        not_found=SupportSetNotFoundError, min_role=min_role)


def support_class_get_for_user(*, user: AbstractBaseUser, class_id: int, min_role: str = Role.VIEWER) -> SupportClass:
    return get_for_user(SupportClass.objects.select_related("support_set__album"), user=user, pk=class_id,
                        album_path="support_set__album", not_found=SupportClassNotFoundError, min_role=min_role)


def support_image_get_for_user(*, user: AbstractBaseUser, support_image_id: int, min_role: str = Role.VIEWER) -> SupportImage:
    return get_for_user(SupportImage.objects.select_related("support_set__album", "support_class", "image"), user=user,
                        pk=support_image_id, album_path="support_set__album", not_found=SupportImageNotFoundError,
                        min_role=min_role)


def support_classes_with_images(*, support_set: SupportSet) -> list[SupportClass]:
    """Classes in display order, each with `support_images` (and their album images) prefetched."""
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


def label_get_for_user(*, user: AbstractBaseUser, label_id: int, min_role: str = Role.VIEWER) -> Label:
    return get_for_user(Label.objects.select_related("support_set__album", "image"), user=user, pk=label_id,
                        album_path="support_set__album", not_found=LabelNotFoundError, min_role=min_role)
