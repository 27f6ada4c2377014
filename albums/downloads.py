"""Images as one ZIP file, streamed: the archive is written while it is sent, a chunk at a time, so
a download of a thousand photos holds about one chunk in memory, never the archive.

Members are stored, not deflated: photos are compressed already (deflating a JPEG saves ~1 % for
all of its CPU). The standard library's zipfile writes to an unseekable stream by putting each
member's CRC and sizes in a data descriptor after its data, and ZIP64 records where sizes need them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO

from django.utils.text import slugify

CHUNK_BYTES = 1 << 20
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold


@dataclass(frozen=True)
class ZipMember:
    name: str
    size: int  # the stored size, known before reading: it decides whether ZIP64 headers are needed
    modified: datetime | None
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def archive_name(album_name: str, *, album_id: int) -> str:
    """"Summer in Köln!" → "summer-in-koln.zip"; a name with no ASCII letters or digits → "album-7.zip"."""
    return f"{slugify(album_name) or f'album-{album_id}'}.zip"


def member_names(names: Iterable[str]) -> list[str]:
    """Each name once, whatever the case (unzipping on Windows or macOS folds it): "a.jpg", "a (2).jpg",
    "A (3).JPG". A name cannot climb out of the folder it is unzipped into."""
    taken: set[str] = set()
    result = []
    for raw in names:
        name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".") or "image"
        stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
        candidate, n = name, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem} ({n}){suffix}"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


class _Sink(io.RawIOBase):
    """An unseekable file that keeps what zipfile writes until the stream takes it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _date_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    if moment is None or moment.year < 1980:
        return _ZIP_EPOCH
    return (min(moment.year, 2107), moment.month, moment.day, moment.hour, moment.minute, moment.second)


def zip_stream(members: Iterable[ZipMember]) -> Iterator[bytes]:
    """The ZIP archive of `members`, in chunks of about CHUNK_BYTES. A member's file is opened only
    when its turn comes and closed after it."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=_date_time(member.modified))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = member.size
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r-- (0 unzips with no permissions)
            with member.open() as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
                    yield sink.take()
            if data := sink.take():
                yield data
    if data := sink.take():  # the central directory
        yield data
