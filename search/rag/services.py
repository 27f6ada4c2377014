"""Writes on support sets, classes and their example images.

Patch vectors are never made here: adding an image (or changing how a set is patched) marks its
support images pending and, after commit, sends them to the `encode` queue (search/rag/indexing.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max

from albums.models import Album, Image
from albums.services import image_upload_many, validated_encoder_spec
from config.errors import ApplicationError
from search.rag.errors import SupportSetConflictError
from search.rag.models import SupportClass, SupportImage, SupportSet
from search.rag.patches import cells_per_side

# Changing any of these changes every patch vector of the set.
def check_patch_count(resolution: int, patch_size: int) -> None:
    """Every patch of an image is a crop to embed (or a token to pool) and a vector to store and
    match: the grid is bounded, so one request cannot ask for 65,536 crops of one image."""
    count = cells_per_side(resolution, patch_size) ** 2
    if count > settings.LOUPE_RAG_MAX_PATCHES:
        raise ApplicationError(
            f"{resolution} px in patches of {patch_size} px is {count} patches per image; at most "
            f"{settings.LOUPE_RAG_MAX_PATCHES}: use larger patches or a lower resolution.",
            code="too_many_patches", extra={"patches": count, "max_patches": settings.LOUPE_RAG_MAX_PATCHES},
        )


PATCH_SETTINGS = ("encoder_spec", "patch_source", "support_resolution", "patch_size")
EDITABLE = ("name", "description", "use_vlm", "flag_true_label", *PATCH_SETTINGS)


def _clean(obj) -> None:
    try:
        obj.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise SupportSetConflictError(
            "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()),
            extra={"fields": exc.message_dict},
        ).with_status(400) from None
    if getattr(obj, "patch_size", 0) > getattr(obj, "support_resolution", 1 << 30):
        raise SupportSetConflictError(
            f"The patch size ({obj.patch_size}) must not exceed the support resolution ({obj.support_resolution}).",
            code="invalid",
        ).with_status(400)
    if hasattr(obj, "patch_size"):
        check_patch_count(obj.support_resolution, obj.patch_size)


def _save_unique(obj, message: str) -> None:
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise SupportSetConflictError(message) from None


def support_set_create(*, album: Album, user: AbstractBaseUser, name: str, **fields) -> SupportSet:
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise TypeError(f"Unknown support-set fields: {sorted(unknown)}")
    spec = fields.pop("encoder_spec", None) or album.encoder_spec
    support_set = SupportSet(album=album, name=name, created_by=user, encoder_spec=validated_encoder_spec(spec), **fields)
    _clean(support_set)
    _save_unique(support_set, f"This album already has a support set named {name!r}.")
    return support_set


@transaction.atomic
def support_set_update(*, support_set: SupportSet, **changes) -> SupportSet:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"Unknown support-set fields: {sorted(unknown)}")
    if changes.get("encoder_spec"):
        changes["encoder_spec"] = validated_encoder_spec(changes["encoder_spec"])
    # Compare with the stored row, locked: the caller's instance may already carry the new values
    # (a bound ModelForm writes into it), and two concurrent changes must bump twice.
    stored = dict(zip(PATCH_SETTINGS, SupportSet.objects.select_for_update().values_list(*PATCH_SETTINGS).get(pk=support_set.pk)))
    repatch = any(field in changes and changes[field] != stored[field] for field in PATCH_SETTINGS)
    for field, value in changes.items():
        setattr(support_set, field, value)
    _clean(support_set)
    if repatch:
        support_set.generation = SupportSet.objects.values_list("generation", flat=True).get(pk=support_set.pk) + 1
    _save_unique(support_set, f"This album already has a support set named {support_set.name!r}.")
    if repatch:
        # Old patches stay until each image's new ones are written (in the same transaction), so
        # nothing half-made is ever read: classification reads only rows of the current settings.
        SupportImage.objects.filter(support_set=support_set).update(status=SupportImage.Status.PENDING, failure_reason="")
        _enqueue(support_set, list(SupportImage.objects.filter(support_set=support_set).values_list("pk", flat=True)))
    return support_set


def support_set_delete(*, support_set: SupportSet) -> None:
    support_set.delete()  # classes, support images and patches cascade; album images stay


def support_class_create(*, support_set: SupportSet, label: str) -> SupportClass:
    label = (label or "").strip()
    if not label:
        raise SupportSetConflictError("A class needs a label.", code="invalid").with_status(400)
    position = (SupportClass.objects.filter(support_set=support_set).aggregate(m=Max("position"))["m"] or 0) + 1
    support_class = SupportClass(support_set=support_set, label=label, position=position)
    _clean(support_class)
    _save_unique(support_class, f"This support set already has a class {label!r}.")
    return support_class


def support_class_update(*, support_class: SupportClass, label: str | None = None, position: int | None = None) -> SupportClass:
    if label is not None:
        label = label.strip()
        if not label:
            raise SupportSetConflictError("A class needs a label.", code="invalid").with_status(400)
        support_class.label = label
    if position is not None:
        support_class.position = position
    _clean(support_class)
    _save_unique(support_class, f"This support set already has a class {label!r}.")
    return support_class


def support_class_delete(*, support_class: SupportClass) -> None:
    support_class.delete()


@dataclass(frozen=True)
class SupportAddResult:
    name: str
    status: str  # added | exists | rejected
    support_image_id: int | None = None
    image_id: int | None = None
    code: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SupportAddSummary:
    """What adding examples answers (SupportAddResponseSerializer): the counts, then each item's result."""

    results: tuple[SupportAddResult, ...]

    @property
    def added(self) -> int:
        return sum(r.status == "added" for r in self.results)

    @property
    def rejected(self) -> int:
        return sum(r.status == "rejected" for r in self.results)


def _attach(support_class: SupportClass, image_id: int, name: str) -> SupportAddResult:
    existing = SupportImage.objects.filter(support_set_id=support_class.support_set_id, image_id=image_id).select_related(
        "support_class"
    ).first()
    if existing is not None:
        if existing.support_class_id == support_class.pk:
            return SupportAddResult(name, "exists", existing.pk, image_id, reason="Already an example of this class.")
        return SupportAddResult(
            name,
            "rejected",
            None,
            image_id,
            code="already_in_set",
            reason=f"Already an example of class {existing.support_class.label!r} in this set; an image is an "
            "example of one class only.",
        )
    try:
        with transaction.atomic():
            support_image = SupportImage.objects.create(
                support_class=support_class, support_set_id=support_class.support_set_id, image_id=image_id
            )
    except IntegrityError:  # the same image added to another class a moment ago
        return SupportAddResult(name, "rejected", None, image_id, code="already_in_set", reason="Already in this set.")
    return SupportAddResult(name, "added", support_image.pk, image_id)


def support_images_add(
    *,
    support_class: SupportClass,
    user: AbstractBaseUser,
    files: Iterable[tuple[str, IO[bytes]]] = (),
    image_ids: Sequence[int] = (),
    oversized: Iterable[str] = (),
) -> list[SupportAddResult]:
    """Uploads go into the album first (same checks as any upload, and they become searchable);
    picked images must be in the set's album. Every item gets its own result."""
    album = support_class.support_set.album
    results: list[SupportAddResult] = []
    for upload in image_upload_many(album=album, user=user, files=files, oversized=oversized):
        if upload.status == "rejected":
            results.append(SupportAddResult(upload.name, "rejected", code=upload.code, reason=upload.reason))
        else:
            results.append(_attach(support_class, upload.image_id, upload.name))
    in_album = set(Image.objects.filter(album=album, pk__in=list(image_ids)).values_list("pk", flat=True))
    for image_id in image_ids:
        if image_id in in_album:
            results.append(_attach(support_class, image_id, f"image {image_id}"))
        else:
            # The same answer for "missing" and "in an album you cannot see".
            results.append(SupportAddResult(f"image {image_id}", "rejected", code="image_not_found", reason="Image not found in this album."))
    added = [r.support_image_id for r in results if r.status == "added"]
    if added:
        _enqueue(support_class.support_set, added)
    return results


def support_image_remove(*, support_image: SupportImage) -> None:
    support_image.delete()  # the album image stays


def _enqueue(support_set: SupportSet, support_image_ids: list[int]) -> None:
    if not support_image_ids:
        return
    set_id, generation = support_set.pk, support_set.generation

    def send():
        # cycle: search.rag.tasks imports this module (through search.rag.classify)
        from search.rag.tasks import encode_support_patches

        encode_support_patches.delay(set_id, generation, support_image_ids)

    transaction.on_commit(send)

