"""Upload → index → search, across the web process, a real Celery worker and real (tiny) encoders."""

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from django.core.cache import cache

from albums import services
from search.query_encoding import EmbeddingModelMismatchError, encode_locally
from search.query_worker import QUERY_IMAGE_KEY_PREFIX
from tests.images import noise_png
from tests.tiny_models import OPEN_CLIP_TINY
from tests.workers.test_indexing import _finished_job

pytestmark = pytest.mark.slow


def _indexed_album(alice, count=6):
    album = services.album_create(owner=alice, name="e2e", encoder_spec=OPEN_CLIP_TINY)
    files = {f"{i}.png": noise_png(size=(48, 40), seed=i) for i in range(count)}
    results = services.image_upload_many(album=album, user=alice, files=[(n, io.BytesIO(d)) for n, d in files.items()])
    job = _finished_job(album)
    assert job.status == "succeeded", job.message
    album.refresh_from_db()
    return album, files, {r.name: r.image_id for r in results}


@pytest.mark.parametrize("mode", ["web", "worker"])
def test_an_uploaded_image_finds_itself_first(worker, alice, client_for, settings, mode):
    settings.LOUPE_QUERY_ENCODING = mode
    album, files, ids = _indexed_album(alice)
    client = client_for(alice)
    for name in ("0.png", "3.png"):
        response = client.post(
            f"/api/v1/albums/{album.pk}/search/",
            {"image_base64": base64.b64encode(files[name]).decode(), "min_score": -1},
            format="json",
        )
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["model_id"] == album.active_model_id
        assert body["results"][0]["image_id"] == ids[name]
        assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert body["count"] == len(files)
    # On the worker the bytes came beside the task, under a key the task removed as it read them.
    assert cache._cache.get_client().keys(f"*{QUERY_IMAGE_KEY_PREFIX}*") == []
    # Text works on this text-capable encoder too, and every result carries its text cosine.
    body = client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "red sled", "min_score": -1}, format="json").json()
    assert len(body["results"]) == len(files) and all("text" in r["cosines"] for r in body["results"])
    similar = client.get(f"/api/v1/images/{ids['1.png']}/similar/?min_score=-1").json()
    assert ids["1.png"] not in [r["image_id"] for r in similar["results"]] and len(similar["results"]) == len(files) - 1


def test_query_encoding_with_different_settings_concurrently_does_not_interfere(worker, alice):
    album, _, _ = _indexed_album(alice, count=1)
    model_id = album.active_model_id
    texts = {"text": "kids on a red sled"}
    plain = encode_locally(model_id=model_id, texts=texts, image_bytes=None, ensemble=False)["vectors"]["text"]
    ensembled = encode_locally(model_id=model_id, texts=texts, image_bytes=None, ensemble=True)["vectors"]["text"]
    assert not np.allclose(plain, ensembled)

    def run(ensemble):
        return ensemble, encode_locally(model_id=model_id, texts=texts, image_bytes=None, ensemble=ensemble)["vectors"]["text"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        for ensemble, vector in pool.map(run, [True, False] * 10):
            assert np.allclose(vector, ensembled if ensemble else plain, atol=1e-6)


def test_vectors_of_other_weights_are_refused_not_compared(worker, alice, client_for):
    album, files, _ = _indexed_album(alice, count=1)
    stale = album.active_model_id.rsplit("@", 1)[0] + "@sha256:000000000000"
    with pytest.raises(EmbeddingModelMismatchError):
        encode_locally(model_id=stale, texts={"text": "x"}, image_bytes=None, ensemble=False)
    album.active_model_id = stale
    album.save(update_fields=["active_model_id"])
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "embedding_model_mismatch"


@pytest.mark.parametrize("mode", ["web", "worker"])
def test_a_truncated_query_image_is_a_clear_400_in_either_encoding_place(worker, alice, client_for, settings, mode):
    """The web checks a query image's header only; the decode that encoding does anyway reports
    damaged data, with the same code an upload gets, wherever it runs."""
    from PIL import Image as PILImage

    settings.LOUPE_QUERY_ENCODING = mode
    album, _, _ = _indexed_album(alice, count=1)
    out = io.BytesIO()
    PILImage.effect_noise((320, 240), 64).convert("RGB").save(out, "JPEG", quality=90)
    truncated = out.getvalue()[: len(out.getvalue()) // 2]
    response = client_for(alice).post(
        f"/api/v1/albums/{album.pk}/search/", {"image_base64": base64.b64encode(truncated).decode()}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "corrupt_image" and "truncated" in response.json()["message"]
