"""The bad-input corpus through folder import, plus what only a file system can hold: links out of
the allowed roots, a link loop, a FIFO (reading it would block forever), traversal in the path."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest

from albums.folder_import import folder_import
from albums.models import Image
from tests.reliability.corpus import UPLOAD_LIMIT, corpus

pytestmark = pytest.mark.django_db


def _file_name(case) -> str:
    """The case's kind with the suffix the client used, so the import's suffix pre-filter passes it on."""
    suffix = PurePosixPath(case.name).suffix.lower()
    return f"{case.kind}{suffix if suffix in {'.jpg', '.png', '.gif', '.webp', '.heic', '.avif', '.tif', '.bmp'} else '.jpg'}"


@pytest.fixture
def corpus_tree(tmp_path, settings, import_root):
    settings.LOUPE_IMPORT_ROOTS = [str(import_root)]
    settings.LOUPE_MAX_UPLOAD_BYTES = UPLOAD_LIMIT
    root = import_root / f"corpus-{tmp_path.name}"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(next(c for c in corpus() if c.kind == "good").data)
    cases = [c for c in corpus() if c.kind != "duplicate-in-request"]
    for case in cases:
        (root / _file_name(case)).write_bytes(case.data)
    os.symlink(outside / "secret.jpg", root / "escape-file.jpg")
    os.symlink(outside, root / "escape-dir")
    os.symlink("../../../../../../../../etc/passwd", root / "traversal-link.jpg")
    (root / "loop").mkdir()
    os.symlink(root / "loop", root / "loop" / "again")
    os.mkfifo(root / "pipe.jpg")
    return root, cases


def test_folder_import_gives_every_file_an_outcome_and_never_leaves_the_roots(corpus_tree, album, alice):
    root, cases = corpus_tree
    report = folder_import(album=album, user=alice, path=str(root))
    rejected = {row.path: row for row in report.rejected}
    for case in cases:
        name = _file_name(case)
        if case.status == "rejected":
            assert rejected[name].code == case.code, (case.kind, rejected.get(name))
        else:
            assert name not in rejected, rejected.get(name)
    assert rejected["escape-file.jpg"].code == "skipped"
    assert "outside the allowed import roots" in rejected["escape-file.jpg"].reason
    assert "outside the allowed import roots" in rejected["traversal-link.jpg"].reason
    assert rejected["pipe.jpg"].reason == "Not a regular file."
    # The linked folder is not followed, so its file is neither imported nor listed.
    assert not any(path.startswith("escape-dir") for path in rejected)
    created = [c for c in cases if c.status == "created"]
    assert (report.created, report.duplicates) == (len(created), 0)
    assert Image.objects.filter(album=album).count() == len(created)
    secret = next(c for c in corpus() if c.kind == "good").data
    import hashlib

    # The outside file has the same bytes as good.jpg: it got in only as good.jpg, from inside the root.
    assert list(Image.objects.filter(sha256=hashlib.sha256(secret).hexdigest()).values_list("original_name", flat=True)) == ["good.jpg"]


@pytest.mark.parametrize("path", ["{root}/../..", "{root}/escape-dir", "{root}/loop/again/../../../..", "/proc/self/root/etc"])
def test_api_folder_import_refuses_traversal(corpus_tree, album, alice, client_for, path):
    root, _ = corpus_tree
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/import/", {"path": path.format(root=root)}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "import_path_refused"
    assert not Image.objects.exists()
