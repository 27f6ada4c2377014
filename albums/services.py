"""Writes: albums, membership and images. Views call these; they call nothing in views."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F

from albums import hooks
from albums.errors import MembershipError, UserNotFoundError
from albums.imaging import ImageRejected, clean_filename, probe_image
from albums.models import Album, AlbumMembership, Image, ImageMask
from albums.roles import Role
from config.errors import ApplicationError, ConflictError
from encoders.errors import EncoderNotAllowed, EncoderSpecError
from encoders.pooling import MEAN
from encoders.registry import default_encoder_spec, ensemble_by_default, validate_spec
from encoders.spec import EncoderSpec
from encoders.weights import downloads_allowed, find_weights, weights_missing_error

logger = logging.getLogger(__name__)

ALBUM_SETTINGS = (
    "name", "description", "encoder_spec", "min_search_score", "max_search_results", "use_query_optimization",
    "pooling", "vector_storage",
)
# Settings the stored vectors depend on (they are part of the model_id): changing one rebuilds.
VECTOR_SETTINGS = ("encoder_spec", "pooling", "vector_storage")


class EncoderSpecInvalidError(ApplicationError):
    code = "encoder_spec_invalid"


def validated_encoder_spec(spec: str) -> str:
    try:
        return str(validate_spec(spec))
    except EncoderNotAllowed as exc:
        raise EncoderSpecInvalidError(str(exc), code="encoder_not_allowed", extra={"encoder_spec": spec}) from None
    except EncoderSpecError as exc:
        raise EncoderSpecInvalidError(str(exc), extra={"encoder_spec": spec}) from None


class PoolingUnsupportedError(ApplicationError):
    code = "pooling_unsupported"


def _check_pooling(*, encoder_spec: str, pooling: str) -> None:
    """Masked and region pooling average a backbone's token grid: only dense backbones have one."""
    if pooling != MEAN and EncoderSpec.parse(encoder_spec).backend != "dense":
        raise PoolingUnsupportedError(
            f"Pooling {pooling!r} needs a dense backbone (dense:dinov2-small, dense:sapiens2-<size>…); "
            f"{encoder_spec} gives one vector per image. Use pooling 'mean' with it.",
            extra={"pooling": pooling, "encoder_spec": encoder_spec},
        )


@transaction.atomic
def album_create(
    *,
    owner: AbstractBaseUser,
    name: str,
    description: str = "",
    encoder_spec: str | None = None,
    min_search_score: float | None = None,
    max_search_results: int = 100,
    use_query_optimization: bool | None = None,
    pooling: str = MEAN,
    vector_storage: str = "vector",
) -> Album:
    spec = validated_encoder_spec(encoder_spec or default_encoder_spec())
    album = Album(
        owner=owner,
        name=name,
        description=description,
        encoder_spec=spec,
        min_search_score=min_search_score,
        max_search_results=max_search_results,
        use_query_optimization=ensemble_by_default(spec) if use_query_optimization is None else use_query_optimization,
        pooling=pooling,
        vector_storage=vector_storage,
    )
    album.full_clean()
    _check_pooling(encoder_spec=album.encoder_spec, pooling=album.pooling)
    album.save()
    AlbumMembership.objects.create(album=album, user=owner, role=Role.OWNER)
    return album


@transaction.atomic
def album_update(*, album: Album, user: AbstractBaseUser | None = None, **changes) -> Album:
    """Change an album's settings. A new encoder, pooling or storage bumps the generation, so work
    started under the old settings writes nothing, and rebuilds the album's vectors."""
    unknown = set(changes) - set(ALBUM_SETTINGS)
    if unknown:
        raise ApplicationError(f"Unknown album settings: {', '.join(sorted(unknown))}.", code="unknown_field")
    if "encoder_spec" in changes:
        changes["encoder_spec"] = validated_encoder_spec(changes["encoder_spec"])
    # Compare with the stored row, locked: the caller's instance may already carry the new value
    # (a bound ModelForm writes into it), and two concurrent changes must bump twice.
    stored = dict(zip(VECTOR_SETTINGS, Album.objects.select_for_update().values_list(*VECTOR_SETTINGS).get(pk=album.pk)))
    encoder_changed = any(name in changes and changes[name] != stored[name] for name in VECTOR_SETTINGS)
    if "encoder_spec" in changes and changes["encoder_spec"] != stored["encoder_spec"]:
        _check_weights_obtainable(changes["encoder_spec"])
    for name, value in changes.items():
        setattr(album, name, value)
    album.full_clean()
    _check_pooling(encoder_spec=album.encoder_spec, pooling=album.pooling)
    album.save(update_fields=[*changes, "updated_at"])
    if encoder_changed:
        Album.objects.filter(pk=album.pk).update(generation=F("generation") + 1)
        album.refresh_from_db(fields=["generation"])
        hooks.album_vectors_changed.send(sender=None, album=album, user=user)
    return album


def _check_weights_obtainable(spec: str) -> None:
    """Refuse a new encoder whose weights are neither here nor downloadable: its rebuild would fail
    and the album would stay on the old one, which the settings page used to call "saved"."""
    parsed = EncoderSpec.parse(spec)
    if downloads_allowed() or find_weights(parsed) is not None:
        return
    missing = weights_missing_error(parsed)
    raise ConflictError(missing.message, code="encoder_weights_missing", extra=missing.extra)


def _delete_stored_files(names: Iterable[str]) -> None:
    for name in names:
        if name:
            try:
                default_storage.delete(name)
            except OSError:
                logger.warning("could not delete stored file %s", name, exc_info=True)


def _mask_files(image_ids) -> list[str]:
    """Uploaded masks go with their images' rows (cascade); their files are deleted here too."""
    return [name for name in ImageMask.objects.filter(image_id__in=image_ids).values_list("file", flat=True) if name]


@transaction.atomic
def album_delete(*, album: Album) -> None:
    names = [n for pair in Image.objects.filter(album=album).values_list("file", "thumbnail") for n in pair]
    names += _mask_files(Image.objects.filter(album=album).values("pk"))
    album.delete()
    # Files go only once the rows are gone for good.
    transaction.on_commit(lambda: _delete_stored_files(names))


@transaction.atomic
def album_member_add(*, album: Album, username: str, role: str) -> AlbumMembership:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise UserNotFoundError(f"No active user named {username!r}.", extra={"username": username})
    membership, created = AlbumMembership.objects.get_or_create(album=album, user=user, defaults={"role": role})
    if not created and membership.role != role:
        _refuse_losing_last_owner(album=album, membership=membership, new_role=role)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def _refuse_losing_last_owner(*, album: Album, membership: AlbumMembership, new_role: str | None) -> None:
    if membership.role != Role.OWNER or new_role == Role.OWNER:
        return
    owners = AlbumMembership.objects.select_for_update().filter(album=album, role=Role.OWNER)
    if owners.count() <= 1:
        raise MembershipError("An album keeps at least one owner; add another owner first.")


@transaction.atomic
def album_member_remove(*, album: Album, user_id: int) -> None:
    membership = AlbumMembership.objects.filter(album=album, user_id=user_id).first()
    if membership is None:
        raise UserNotFoundError("That user is not a member of this album.", code="member_not_found")
    _refuse_losing_last_owner(album=album, membership=membership, new_role=None)
    membership.delete()


# --- Images -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadResult:
    name: str
    status: str  # created | duplicate | rejected
    image_id: int | None = None
    reason: str = ""
    code: str = ""


@dataclass(frozen=True)
class UploadSummary:
    """What an upload request answers (UploadResponseSerializer): the counts, then each file's result."""

    results: tuple[UploadResult, ...]

    @property
    def created(self) -> int:
        return sum(r.status == "created" for r in self.results)

    @property
    def duplicates(self) -> int:
        return sum(r.status == "duplicate" for r in self.results)

    @property
    def rejected(self) -> int:
        return sum(r.status == "rejected" for r in self.results)


def _store_image(*, album: Album, user: AbstractBaseUser, fp: IO[bytes], name: str) -> UploadResult:
    try:
        probed = probe_image(fp)
    except ImageRejected as exc:
        return UploadResult(name=name, status="rejected", reason=exc.reason, code=exc.code)
    existing = Image.objects.filter(album=album, sha256=probed.sha256).values_list("pk", flat=True).first()
    if existing:
        return UploadResult(name=name, status="duplicate", image_id=existing, reason="Already in this album.")
    image = Image(
        album=album,
        original_name=name,
        sha256=probed.sha256,
        bytes=probed.bytes,
        width=probed.width,
        height=probed.height,
        mime=probed.mime,
        uploaded_by=user,
    )
    try:
        with transaction.atomic():
            image.file.save("upload", File(fp), save=False)
            image.save()
    except IntegrityError:
        # Another request stored the same bytes a moment ago.
        _delete_stored_files([image.file.name])
        existing = Image.objects.filter(album=album, sha256=probed.sha256).values_list("pk", flat=True).first()
        return UploadResult(name=name, status="duplicate", image_id=existing, reason="Already in this album.")
    return UploadResult(name=name, status="created", image_id=image.pk)


def image_upload_many(
    *, album: Album, user: AbstractBaseUser, files: Iterable[tuple[str, IO[bytes]]], oversized: Iterable[str] = ()
) -> list[UploadResult]:
    """Store each file that is a usable image; every file gets its own result, and one bad file
    never affects the others. Metadata, thumbnails and vectors are made by workers after commit."""

    results = [
        UploadResult(
            name=clean_filename(name),
            status="rejected",
            code="file_too_large",
            reason=f"The file is larger than the {settings.LOUPE_MAX_UPLOAD_BYTES}-byte limit.",
        )
        for name in oversized
    ]
    for name, fp in files:
        results.append(_store_image(album=album, user=user, fp=fp, name=clean_filename(name)))
    created = [r.image_id for r in results if r.status == "created"]
    if created:
        # robust: the files are stored by now, so a broker outage is logged, not turned into a 500 the
        # client would retry. The images stay pending; the running job's follow-up or the recovery sweep
        # once the broker is back (workers/recovery.py) picks them up, and thumbnails are rendered on
        # request meanwhile (bench/faults.py).
        transaction.on_commit(lambda: hooks.announce(hooks.images_uploaded, album=album, user=user, image_ids=created))
    return results


@transaction.atomic
def image_delete(*, image: Image) -> None:
    names = [image.file.name, image.thumbnail.name, *_mask_files([image.pk])]
    image.delete()  # embeddings go with it (FK cascade)
    transaction.on_commit(lambda: _delete_stored_files(names))


def image_mark_failed(*, image_id: int, reason: str) -> None:
    Image.objects.filter(pk=image_id).update(status=Image.Status.FAILED, failure_reason=reason[:2000] or "failed")


def image_save_metadata(*, image: Image, metadata, thumbnail: bytes) -> None:
    old_thumbnail = image.thumbnail.name
    image.width, image.height = metadata.width, metadata.height
    image.taken_at, image.camera, image.exif = metadata.taken_at, metadata.camera, metadata.exif
    image.thumbnail.save("thumb.webp", ContentFile(thumbnail), save=False)
    image.save(update_fields=["width", "height", "taken_at", "camera", "exif", "thumbnail", "updated_at"])
    if old_thumbnail and old_thumbnail != image.thumbnail.name:
        _delete_stored_files([old_thumbnail])
