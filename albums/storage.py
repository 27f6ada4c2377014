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
