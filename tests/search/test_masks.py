"""Uploaded foreground masks for masked pooling (search/masks.py, `/api/v1/images/{id}/mask/`)."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image as PILImage

from albums import services
from albums.models import Image, ImageMask
from albums.roles import Role
from encoders import pooling
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder
from tests.conftest import wait_for
from tests.images import noise_png
from tests.tiny_models import DINOV2_TINY
from tests.workers.test_indexing import _finished_job
from workers.indexing import _drop_remasked
from workers.models import Embedding
from workers.pipeline import Embedded


def _png(array: np.ndarray, mode: str) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(array.astype(np.uint8), mode).save(out, format="PNG")
    return out.getvalue()


def _left_half_mask(size=(40, 40)) -> bytes:
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[:, : size[0] // 2] = 255
    return _png(mask, "L")


@pytest.fixture
def photo(alice, db, settings, tiny_models_dir):
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOWED_ENCODERS = []
    album = services.album_create(owner=alice, name="masked", encoder_spec=DINOV2_TINY, pooling="masked")
    [result] = services.image_upload_many(album=album, user=alice, files=[("p.png", io.BytesIO(noise_png(size=(40, 40))))])
    return Image.objects.get(pk=result.image_id)


def test_put_get_delete_mask_and_what_is_refused(photo, alice, bob, client_for):
    client = client_for(alice)
    url = f"/api/v1/images/{photo.pk}/mask/"
    assert client.get(url).json()["code"] == "mask_not_found"
    # An RGBA mask: its alpha is the foreground.
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10, 3] = 255
    response = client.put(url, {"mask": io.BytesIO(_png(rgba, "RGBA"))}, format="multipart")
    assert response.status_code == 200, response.json()
    assert response.json()["reindexing"] is True
    stored = client.get(url)
    assert stored.status_code == 200 and stored["Content-Type"] == "image/png"
    mask = PILImage.open(io.BytesIO(b"".join(stored.streaming_content)))
    assert mask.mode == "L" and np.asarray(mask)[:, :10].min() == 255 and np.asarray(mask)[:, 10:].max() == 0
    for bad, code in ((b"<html>not an image</html>", "mask_invalid"), (_png(np.zeros((8, 8)), "L"), "mask_invalid")):
        refused = client.put(url, {"mask": io.BytesIO(bad)}, format="multipart")
        assert refused.status_code == 400 and refused.json()["code"] == code
    assert client.put(url, {}, format="multipart").status_code == 400
    # A viewer cannot change it; a stranger cannot tell the image exists.
    services.album_member_add(album=photo.album, username=bob.username, role=Role.VIEWER)
    assert client_for(bob).delete(url).status_code == 403
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert ImageMask.objects.get(image=photo).file.name == ""  # the row stays as a fence for chunks in flight


def test_setting_a_mask_drops_the_images_masked_vectors_only(photo):
    album = photo.album
    masked_model = f"{DINOV2_TINY}@sha256:0123456789ab+pooling=masked"
    mean_model = f"{DINOV2_TINY}@sha256:0123456789ab"
    for model_id in (masked_model, mean_model):
        Embedding.objects.create(image=photo, album=album, model_id=model_id, dim=3, vector=[1, 0, 0])
    Image.objects.filter(pk=photo.pk).update(status="indexed")
    from search.masks import image_mask_set

    image_mask_set(image=photo, data=_left_half_mask())
    assert list(Embedding.objects.filter(image=photo).values_list("model_id", flat=True)) == [mean_model]
    assert Image.objects.get(pk=photo.pk).status == "pending"


def test_a_chunk_that_read_the_old_mask_writes_nothing_for_that_image(photo):
    from search.masks import image_mask_set

    before = timezone.now() - datetime.timedelta(seconds=1)
    embedded = Embedded(image_ids=[photo.pk, photo.pk + 1], vectors=np.eye(2, 3, dtype=np.float32),
                        regions=np.zeros((2, 12, 3), dtype=np.float32), notes={photo.pk + 1: pooling.NO_MASK})
    image_mask_set(image=photo, data=_left_half_mask())
    _drop_remasked(embedded, since=before)
    assert embedded.image_ids == [photo.pk + 1]
    np.testing.assert_array_equal(embedded.vectors, np.eye(2, 3, dtype=np.float32)[1:])
    assert embedded.regions.shape == (1, 12, 3) and embedded.notes == {photo.pk + 1: pooling.NO_MASK}
    later = Embedded(image_ids=[photo.pk], vectors=np.ones((1, 3), dtype=np.float32))
    _drop_remasked(later, since=timezone.now())
    assert later.image_ids == [photo.pk]


@pytest.mark.slow
def test_an_uploaded_mask_re_embeds_the_image_with_its_foreground(worker, alice, client_for):
    album = services.album_create(owner=alice, name="masked", encoder_spec=DINOV2_TINY, pooling="masked")
    data = noise_png(size=(40, 40), seed=11)
    [result] = services.image_upload_many(album=album, user=alice, files=[("p.png", io.BytesIO(data))])
    assert _finished_job(album).status == "succeeded"
    row = Embedding.objects.get(image_id=result.image_id)
    assert row.pooling_note == pooling.NO_MASK
    encoder = PooledEncoder(get_encoder(DINOV2_TINY, device="cpu"), pooling="masked")
    image = PILImage.open(io.BytesIO(data)).convert("RGB")
    np.testing.assert_allclose(np.asarray(row.vector), encoder.embed([image]).vectors[0], atol=1e-5)

    client = client_for(alice)
    assert client.put(f"/api/v1/images/{result.image_id}/mask/", {"mask": io.BytesIO(_left_half_mask())},
                      format="multipart").status_code == 200

    def re_embedded():
        row = Embedding.objects.filter(image_id=result.image_id).first()
        return row is not None and row.pooling_note == "" and row

    row = wait_for(re_embedded, timeout=60, what="the image to be embedded again with its mask")
    mask = PILImage.open(io.BytesIO(_left_half_mask()))
    expected = encoder.embed([image], masks=[mask]).vectors[0]
    np.testing.assert_allclose(np.asarray(row.vector), expected, atol=1e-5)
    assert not np.allclose(expected, encoder.embed([image]).vectors[0], atol=1e-3)
