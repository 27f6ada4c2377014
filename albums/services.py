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
from albums.errors import ImageFileMissingError, MembershipError, UserNotFoundError
from albums.imaging import ImageRejected, clean_filename, probe_image
from albums.models import Album, AlbumMembership, Image, ImageMask
from albums.roles import Role
from albums.storage import image_file_open
from config.errors import ApplicationError, ConflictError
from encoders.errors import EncoderNotAllowed, EncoderSpecError
from encoders.pooling import MEAN
from encoders.registry import default_encoder_spec, default_text_encoder, ensemble_by_default, validate_spec
from encoders.spec import EncoderSpec
from encoders.weights import default_fetch_allowed, downloads_allowed, find_weights, weights_missing_error

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


def album_default_encoder() -> str:
    """The encoder a new album gets. Where the default text encoder is missing but may be fetched
    (`LOUPE_ALLOW_DOWNLOADS` auto or true), it is the one: album_create starts its model fetch job
    (or joins the one under way) and the album indexes once the weights land. Only a fetch that
    failed (no hub answered) leaves new albums on the next default that is here."""
    text_spec = default_text_encoder() if default_fetch_allowed() and hooks.model_fetch_provided() else None

    def arriving(spec: EncoderSpec) -> bool:
        state = hooks.model_fetch(spec=str(spec)) if spec == text_spec else None
        return spec == text_spec and (state is None or state.status != "failed")

    return default_encoder_spec(arriving=arriving if text_spec is not None else None)


def album_default_fallback_note() -> str | None:
    """Why new albums do not get the default text encoder, when its download failed: said on the
    album form rather than leaving people to find that words search only ImageNet concepts."""
    text_spec = default_text_encoder() if default_fetch_allowed() else None
    state = hooks.model_fetch(spec=str(text_spec)) if text_spec is not None else None
    if state is None or state.status != "failed" or find_weights(text_spec) is not None:
        return None
    return (f"The default text encoder {text_spec} could not be downloaded, so new albums get the next default: "
            f"{state.message}")


def _fetch_default_text_weights(spec: str) -> bool:
    """Start (or join) the model fetch of the default text encoder when it is `spec` and missing;
    True when its weights are on their way."""
    parsed = EncoderSpec.parse(spec)
    if not default_fetch_allowed() or parsed != default_text_encoder() or find_weights(parsed) is not None:
        return False
    state = hooks.model_fetch(spec=spec, start=True)
    return state is not None and state.arriving


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
    spec = validated_encoder_spec(encoder_spec or album_default_encoder())
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
    _fetch_default_text_weights(spec)
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
    if downloads_allowed() or find_weights(parsed) is not None or _fetch_default_text_weights(spec):
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


def _images_delete(image_ids: list[int]) -> int:
    """Delete these images' rows (their vectors, region tokens, masks and support-set uses go with
    them: FK cascades) in the caller's transaction, and their files (original, thumbnail, mask) once it
    commits: a rolled-back delete keeps every file."""
    rows = list(Image.objects.filter(pk__in=image_ids).values_list("pk", "file", "thumbnail"))
    found = [pk for pk, _, _ in rows]
    names = [name for _, file, thumbnail in rows for name in (file, thumbnail)] + _mask_files(found)
    Image.objects.filter(pk__in=found).delete()
    transaction.on_commit(lambda: _delete_stored_files(names))
    return len(found)


@transaction.atomic
def image_delete(*, image: Image) -> None:
    _images_delete([image.pk])


@dataclass(frozen=True)
class BulkDeleteResult:
    deleted: int
    missing: list[int]  # ids asked for that are not images of the album (whether they exist elsewhere or not)


@transaction.atomic
def image_delete_many(*, album: Album, image_ids: list[int]) -> BulkDeleteResult:
    """Delete the album's images among `image_ids`, as `image_delete` does each, in one transaction
    (files after it commits). Ids of other albums' images are only reported missing, never touched."""
    found = list(Image.objects.filter(album=album, pk__in=image_ids).values_list("pk", flat=True))
    deleted = _images_delete(found)
    present = set(found)
    return BulkDeleteResult(deleted=deleted, missing=[pk for pk in image_ids if pk not in present])


@dataclass(frozen=True)
class CopyResult:
    copied: list[int]  # the new images' ids in the target album
    skipped_duplicates: int  # the target already holds the same bytes
    missing: list[int]  # ids that are not images of the source album, or whose stored file is gone


def _copy_row(source: Image, *, target: Album, user: AbstractBaseUser) -> Image:
    """A new row for `source`'s bytes in `target`: what upload and the metadata task know already
    (size, EXIF, capture time) is carried over, so the grid sorts right at once; the thumbnail and the
    vectors are made for the target by the same workers an upload starts."""
    return Image(album=target, original_name=source.original_name, sha256=source.sha256, bytes=source.bytes,
                 width=source.width, height=source.height, mime=source.mime, exif=source.exif,
                 taken_at=source.taken_at, camera=source.camera, uploaded_by=user)


def image_copy_many(*, source: Album, target: Album, user: AbstractBaseUser, image_ids: list[int]) -> CopyResult:
    """Copy the source album's images among `image_ids` into `target` as new images: each file is
    stored again under the target (albums never share files, so deleting one never breaks the other),
    an image whose bytes the target holds already is skipped as upload skips it, and after commit the
    target's workers make thumbnails and index the copies with the target's encoder (the upload hook)."""
    sources = list(Image.objects.filter(album=source, pk__in=image_ids))
    by_id = {image.pk: image for image in sources}
    held = set(Image.objects.filter(album=target, sha256__in=[i.sha256 for i in sources]).values_list("sha256", flat=True))
    missing = [pk for pk in image_ids if pk not in by_id]
    skipped, rows, stored = 0, [], []
    try:
        for pk in image_ids:
            image = by_id.get(pk)
            if image is None:
                continue
            if image.sha256 in held:
                skipped += 1
                continue
            row = _copy_row(image, target=target, user=user)
            try:
                with image_file_open(image=image) as fp:
                    row.file.save("copy", File(fp), save=False)
            except ImageFileMissingError:
                missing.append(pk)
                continue
            stored.append(row.file.name)
            held.add(image.sha256)
            rows.append(row)
        created = _insert_copies(rows, target=target)
    except BaseException:
        _delete_stored_files(stored)  # nothing was recorded: no file may stay behind
        raise
    if len(created) < len(rows):  # another request stored some of the same bytes meanwhile
        kept = {row.file.name for row in created}
        _delete_stored_files([row.file.name for row in rows if row.file.name not in kept])
    created_ids = [row.pk for row in created]
    if created_ids:
        transaction.on_commit(lambda: hooks.announce(hooks.images_uploaded, album=target, user=user,
                                                     image_ids=created_ids))
    return CopyResult(copied=created_ids, skipped_duplicates=skipped + len(rows) - len(created), missing=missing)


def _insert_copies(rows: list[Image], *, target: Album) -> list[Image]:
    """All rows in one INSERT; if the target gained some of the same bytes since they were checked
    (the unique constraint), row by row, leaving those out."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            return Image.objects.bulk_create(rows)
    except IntegrityError:
        pass
    created = []
    with transaction.atomic():
        for row in rows:
            row.pk = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
            except IntegrityError:
                continue
            created.append(row)
    return created


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
