"""Checking uploaded files and reading what is inside them: format, size, EXIF, thumbnail.

Everything here works on file-like objects and returns plain values; no database.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO, Any

from django.conf import settings
from PIL import ExifTags, Image, UnidentifiedImageError

from encoders.images import open_rgb

# Pillow's own bomb guard warns at MAX_IMAGE_PIXELS and raises at twice that; ours rejects at the
# setting itself, before any pixel is decoded, so keep Pillow's as a backstop only.
Image.MAX_IMAGE_PIXELS = None

FORMAT_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
}


# Leading bytes of the formats we accept: a file that starts like one but does not open is a
# damaged image, not "not an image".
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _looks_like(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


class ImageRejected(Exception):
    """A file that is not a usable image, with a reason a person can act on."""

    def __init__(self, reason: str, *, code: str):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class ProbedImage:
    mime: str
    format: str
    width: int
    height: int
    sha256: str
    bytes: int


@dataclass
class ImageMetadata:
    width: int
    height: int
    taken_at: datetime | None = None
    camera: str = ""
    exif: dict[str, Any] = field(default_factory=dict)


def clean_filename(name: str) -> str:
    """The last path component of a client-supplied name, without control characters, ≤ 255 chars.
    The name is only shown to people; storage paths come from the content hash."""
    name = PureWindowsPath(PurePosixPath(name or "").name).name
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".") or "unnamed"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 254 - len(ext)] + "." + ext) if dot and len(ext) < 16 else name[:255]
    return name


def sha256_of(fp: IO[bytes]) -> tuple[str, int]:
    fp.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: fp.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    fp.seek(0)
    return digest.hexdigest(), size


def probe_image(fp: IO[bytes], *, decode: bool = True) -> ProbedImage:
    """Identify, bound and fully decode an image (at reduced JPEG scale) or raise ImageRejected.

    `decode=False` stops after the header checks (format, size, aspect ratio, pixel count): for a
    query image that is decoded right after anyway by a path that turns damaged data into the same
    clear error, a second full decode only doubled the CPU of an image search."""
    sha256, size = sha256_of(fp)
    if size == 0:
        raise ImageRejected("The file is empty (0 bytes).", code="empty_file")
    if size > settings.LOUPE_MAX_UPLOAD_BYTES:
        raise ImageRejected(
            f"The file is {size} bytes; the limit is {settings.LOUPE_MAX_UPLOAD_BYTES} bytes.", code="file_too_large"
        )
    try:
        with Image.open(fp) as image:
            fmt = image.format or ""
            width, height = image.size
    except UnidentifiedImageError:
        fp.seek(0)
        if kind := _looks_like(fp.read(16)):
            raise ImageRejected(f"The file starts like a {kind} but its header is damaged.", code="corrupt_image") from None
        raise ImageRejected(
            "Not an image Loupe can read (supported: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF).",
            code="not_an_image",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"The image header is corrupt: {exc}", code="corrupt_image") from None
    if fmt not in FORMAT_MIME:
        raise ImageRejected(f"Image format {fmt or 'unknown'} is not supported.", code="unsupported_format")
    if width < 1 or height < 1:
        raise ImageRejected("The image has no pixels.", code="corrupt_image")
    if max(width, height) > settings.LOUPE_MAX_ASPECT_RATIO * min(width, height):
        # Encoders resize the short side to ~256 px first: a 2×100000 PNG of a few hundred bytes
        # became a 14 GB, 54 s resize in the indexer (measured, docs/reliability.md).
        raise ImageRejected(
            f"The image is {width}×{height}; Loupe takes images up to {settings.LOUPE_MAX_ASPECT_RATIO}:1 "
            "(a longer strip would cost the indexer gigabytes of memory to resize).",
            code="extreme_aspect_ratio",
        )
    if width * height > settings.LOUPE_MAX_IMAGE_PIXELS:
        raise ImageRejected(
            f"The image is {width}×{height} = {width * height} pixels; the limit is "
            f"{settings.LOUPE_MAX_IMAGE_PIXELS} (a file this small with so many pixels is a decompression bomb).",
            code="too_many_pixels",
        )
    fp.seek(0)
    if not decode:
        return ProbedImage(mime=FORMAT_MIME[fmt], format=fmt, width=width, height=height, sha256=sha256, bytes=size)
    try:
        # Decoding everything finds truncation and broken data now rather than in the indexer;
        # JPEG draft mode still reads every byte but skips most of the arithmetic.
        open_rgb(fp, draft_size=(512, 512))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"The image data is damaged or truncated: {exc}", code="corrupt_image") from None
    finally:
        fp.seek(0)
    return ProbedImage(mime=FORMAT_MIME[fmt], format=fmt, width=width, height=height, sha256=sha256, bytes=size)


_EXIF_TEXT_TAGS = {"Make", "Model", "LensModel", "Software", "DateTimeOriginal", "DateTime", "OffsetTimeOriginal"}
_EXIF_NUMBER_TAGS = {"Orientation", "ExposureTime", "FNumber", "ISOSpeedRatings", "FocalLength"}


def _as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return None
    if isinstance(value, tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, (int, str)):
        return value.strip("\x00 ") if isinstance(value, str) else value
    try:
        return float(value)  # IFDRational
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _parse_exif_datetime(text: str | None, offset: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.strptime(text.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if offset:
        try:
            return datetime.strptime(f"{moment:%Y-%m-%d %H:%M:%S}{offset.replace(':', '')}", "%Y-%m-%d %H:%M:%S%z")
        except ValueError:
            pass
    # EXIF times without an offset are local to the camera; UTC is the honest, stable reading.
    return moment.replace(tzinfo=timezone.utc)


def _gps_degrees(values: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(v) for v in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    return -degrees if str(ref).upper().startswith(("S", "W")) else degrees


def read_metadata(fp: IO[bytes]) -> ImageMetadata:
    """Orientation-corrected size, capture time, camera and a JSON-safe subset of EXIF.
    Broken EXIF is dropped, never fatal: the pixels are what matter."""
    with Image.open(fp) as image:
        width, height = image.size
        try:
            exif = image.getexif()
            tags: dict[str, Any] = {ExifTags.TAGS.get(k, str(k)): v for k, v in exif.items()}
            tags.update({ExifTags.TAGS.get(k, str(k)): v for k, v in exif.get_ifd(ExifTags.IFD.Exif).items()})
            gps = {ExifTags.GPSTAGS.get(k, str(k)): v for k, v in exif.get_ifd(ExifTags.IFD.GPSInfo).items()}
        except Exception:  # noqa: BLE001 — malformed EXIF comes in endless shapes; it must not fail the image
            tags, gps = {}, {}
    orientation = tags.get("Orientation")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    kept: dict[str, Any] = {}
    for name in _EXIF_TEXT_TAGS | _EXIF_NUMBER_TAGS:
        if name in tags and (value := _as_json(tags[name])) not in (None, ""):
            kept[name] = value
    if gps:
        lat = _gps_degrees(gps.get("GPSLatitude"), gps.get("GPSLatitudeRef"))
        lon = _gps_degrees(gps.get("GPSLongitude"), gps.get("GPSLongitudeRef"))
        if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
            kept["GPS"] = {"latitude": round(lat, 6), "longitude": round(lon, 6)}
    taken_at = _parse_exif_datetime(
        tags.get("DateTimeOriginal") or tags.get("DateTime"), tags.get("OffsetTimeOriginal")
    )
    make, model = str(kept.get("Make", "")), str(kept.get("Model", ""))
    camera = model if model.lower().startswith(make.lower()) else f"{make} {model}".strip()
    return ImageMetadata(width=width, height=height, taken_at=taken_at, camera=camera[:200], exif=kept)


def make_thumbnail(fp: IO[bytes], *, size: int) -> bytes:
    """An upright WebP no larger than size×size, aspect ratio kept."""
    fp.seek(0)
    rgb = open_rgb(fp, draft_size=(size * 2, size * 2))
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="WEBP", quality=82, method=4)
    return out.getvalue()
