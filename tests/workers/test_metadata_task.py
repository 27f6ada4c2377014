import io

import pytest

from albums import services
from albums.models import Image
from tests.conftest import wait_for
from tests.images import image_bytes, jpeg_with_exif

pytestmark = pytest.mark.slow


def test_real_worker_makes_thumbnail_and_reads_exif(worker, alice):
    album = services.album_create(owner=alice, name="w")
    results = services.image_upload_many(
        album=album,
        user=alice,
        files=[("cam.jpg", io.BytesIO(jpeg_with_exif(orientation=6, size=(120, 60)))), ("plain.png", io.BytesIO(image_bytes("PNG")))],
    )
    ids = [r.image_id for r in results]
    assert all(ids)
    wait_for(lambda: Image.objects.filter(pk__in=ids).exclude(thumbnail="").count() == 2, what="thumbnails from the worker")
    cam = Image.objects.get(pk=ids[0])
    assert (cam.width, cam.height) == (60, 120)  # EXIF orientation 6 swaps them
    assert cam.camera == "Canon EOS R5"
    assert cam.taken_at is not None and cam.taken_at.year == 2021
    assert cam.thumbnail.name.endswith(".webp")
    with cam.thumbnail.open("rb") as fp:
        assert fp.read(4) == b"RIFF"


def test_unreadable_stored_file_is_marked_failed_with_reason(worker, alice):
    album = services.album_create(owner=alice, name="w")
    [result] = services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    image = Image.objects.get(pk=result.image_id)
    # Damage the stored file behind Loupe's back: the worker must record why, not crash.
    with open(image.file.path, "r+b") as fp:
        fp.truncate(200)
    from workers.services import image_metadata_enqueue

    image_metadata_enqueue(image_ids=[image.pk])
    wait_for(lambda: Image.objects.get(pk=image.pk).status == "failed", what="the failure to be recorded")
    assert "Could not read the image" in Image.objects.get(pk=image.pk).failure_reason
