"""Reading an image's stored files. A missing file is an `ImageFileMissingError` (a 404 that says so),
logged for the operator, never a FileNotFoundError that surfaces as a 500."""

from __future__ import annotations

import logging
from typing import IO

from albums.errors import ImageFileMissingError
from albums.models import Image

logger = logging.getLogger(__name__)


def image_file_open(*, image: Image, field: str = "file") -> IO[bytes]:
    """The image's `file` (or `thumbnail`) opened for binary reading; the caller closes it."""
    stored = getattr(image, field)
    try:
        return stored.open("rb")
    except FileNotFoundError:
        logger.warning("image %s: stored %s %r is missing from storage", image.pk, field, stored.name)
        raise ImageFileMissingError(image_id=image.pk, name=stored.name) from None


class StorageUnavailableError(Exception):
    """Reading a stored file failed in a way that may pass (EIO, a stale NFS handle, a timeout): the
    work is retried later and the image is not marked failed."""


def is_transient_io(exc: BaseException) -> bool:
    """An OSError from the storage, not from the file's content. Decoders raise OSError without an
    errno for damaged data ("image file is truncated"): that is permanent, and so is a missing file."""
    return isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, FileNotFoundError)
