"""Importing images from a folder on the server, inside the roots an operator allowed.

Paths are resolved (symlinks and `..` included) before they are compared with the roots, for the
folder and again for every file, so a link inside an allowed root cannot reach outside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

from albums.models import Album
from albums.services import image_upload_many
from config.errors import ApplicationError, PermissionDeniedError

BATCH = 32
# A pre-filter only: probe_image decides what is an image, whatever the name says.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".mpo"}


class ImportPathError(ApplicationError):
    code = "import_path_refused"


@dataclass(frozen=True)
class ImportRejection:
    path: str  # relative to the imported folder
    reason: str
    code: str


@dataclass
class ImportReport:
    """Filled in while the import runs (progress reads it); `as_dict` is the import task's JSON result."""

    created: int = 0
    duplicates: int = 0
    rejected: list[ImportRejection] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"created": self.created, "duplicates": self.duplicates, "rejected": [asdict(r) for r in self.rejected]}


def _roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.LOUPE_IMPORT_ROOTS]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_import_folder(path: str) -> Path:
    roots = _roots()
    if not roots:
        raise PermissionDeniedError(
            "Folder import is off on this server: set LOUPE_IMPORT_ROOTS to the folders it may read.",
            code="import_disabled",
        )
    resolved = Path(path).expanduser().resolve()
    if not _inside(resolved, roots):
        raise ImportPathError(
            f"{path} is outside the allowed import roots ({', '.join(map(str, roots))}).", extra={"path": path}
        )
    if not resolved.is_dir():
        raise ImportPathError(f"{path} is not a folder on the server.", extra={"path": path})
    return resolved


def iter_folder(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """(file, reason to skip or None), recursively, in a stable order. Links are not followed into
    folders, and a file whose real path leaves the roots is skipped with that reason."""
    roots = _roots()
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            real = path.resolve()
            if not _inside(real, roots):
                yield path, "A link that points outside the allowed import roots."
            elif not real.is_file():
                yield path, "Not a regular file."
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                yield path, f"Not an image file name ({path.suffix or 'no extension'})."
            else:
                yield path, None


def count_files(path: str) -> int:
    return sum(1 for _ in iter_folder(resolve_import_folder(path)))


def folder_import(
    *, album: Album, user, path: str, progress: Callable[[ImportReport, int], None] | None = None
) -> ImportReport:
    """Import every image under `path`; `progress(report, files_seen)` after each batch."""
    folder = resolve_import_folder(path)
    report = ImportReport()
    batch: list[Path] = []
    seen = 0

    def flush() -> None:
        handles = [open(p, "rb") for p in batch]
        try:
            names = [str(p.relative_to(folder)) for p in batch]
            results = image_upload_many(album=album, user=user, files=list(zip(names, handles)))
        finally:
            for handle in handles:
                handle.close()
        for name, result in zip(names, results):
            if result.status == "created":
                report.created += 1
            elif result.status == "duplicate":
                report.duplicates += 1
            else:
                report.rejected.append(ImportRejection(path=name, reason=result.reason, code=result.code))
        batch.clear()

    for file_path, skip_reason in iter_folder(folder):
        seen += 1
        if skip_reason:
            relative = str(file_path.relative_to(folder))
            report.rejected.append(ImportRejection(path=relative, reason=skip_reason, code="skipped"))
            continue
        batch.append(file_path)
        if len(batch) >= BATCH:
            flush()
            if progress:
                progress(report, seen)
    if batch:
        flush()
    if progress:
        progress(report, seen)
    return report
