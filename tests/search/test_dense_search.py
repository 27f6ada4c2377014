"""Dense-backbone albums end to end: pooling chosen per album, indexed by a real Celery worker with tiny
real backbones, searched by example image and by a box on it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.db import connection
from PIL import Image as PILImage

from albums import services
from albums.models import Album
from encoders import pooling
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder
from search.rag.models import Label, SupportSet
from workers.models import Embedding, RegionEmbedding
from tests.images import noise_png
from tests.tiny_models import DINOV2_TINY, OPEN_CLIP_TINY, SAPIENS2_INPUT, SAPIENS2_TINY
from tests.workers.test_indexing import _finished_job

pytestmark = pytest.mark.slow

H, W = SAPIENS2_INPUT
CELL_1_1 = [1 / 3, 0.25, 2 / 3, 0.5]  # row 1, col 1 of the 4×3 region grid, in fractions of the image


def _album(alice, *, count=5, spec=SAPIENS2_TINY, **settings):
    album = services.album_create(owner=alice, name="people", encoder_spec=spec, **settings)
    files = {f"{i}.png": noise_png(size=(W, H), seed=100 + i) for i in range(count)}
    results = services.image_upload_many(album=album, user=alice, files=[(n, io.BytesIO(d)) for n, d in files.items()])
    job = _finished_job(album)
    assert job.status == "succeeded", job.message
    album.refresh_from_db()
    return album, files, {r.name: r.image_id for r in results}


def _search(client, album, **body):
    return client.post(f"/api/v1/albums/{album.pk}/search/", body, format="json")


def test_regions_album_ranks_images_by_their_best_matching_region(worker, alice, bob, client_for, settings):
    album, files, ids = _album(alice, pooling="regions")
    assert album.active_model_id.endswith("+pooling=regions-4x3")
    assert Embedding.objects.filter(album=album, model_id=album.active_model_id).count() == len(files)
    assert RegionEmbedding.objects.filter(album=album, model_id=album.active_model_id).count() == 12 * len(files)

    client = client_for(alice)
    response = _search(client, album, image_id=ids["2.png"], box=CELL_1_1, min_score=-1)
    assert response.status_code == 200, response.json()
    body = response.json()
    # The box is exactly stored cell (1, 1) of image 2 (no crop on Sapiens' input): it finds itself there.
    assert body["results"][0]["image_id"] == ids["2.png"]
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert body["results"][0]["region"] == {"cell": 4, "row": 1, "col": 1}
    assert body["region_grid"] == {"rows": 4, "cols": 3}
    assert all(hit["labels"] == [] for hit in body["results"])
    support_set = SupportSet.objects.create(album=album, name="parts", encoder_spec=album.encoder_spec)
    Label.objects.create(image_id=ids["2.png"], support_set=support_set, label="wheel", predicted_label="wheel",
                         scores={}, margin=0.5, state="accepted")
    relabeled = _search(client, album, image_id=ids["2.png"], box=CELL_1_1, min_score=-1).json()["results"]
    assert relabeled[0]["labels"] == [{"support_set": support_set.pk, "support_set_name": "parts", "label": "wheel",
                                       "state": "accepted", "margin": 0.5}]

    # The rest: max-sim over each image's regions, as computed here from the images themselves.
    encoder = PooledEncoder(get_encoder(SAPIENS2_TINY, device="cpu"), pooling="regions")
    images = {name: PILImage.open(io.BytesIO(data)).convert("RGB") for name, data in files.items()}
    query = encoder.box_vector(images["2.png"], CELL_1_1)
    regions = encoder.embed(list(images.values())).regions
    best, cells = pooling.region_max_sim(query, regions)
    expected = sorted(zip(images, best, cells), key=lambda t: (-round(float(t[1]), 5), ids[t[0]]))
    got = [(r["image_id"], r["score"], r["region"]["cell"]) for r in body["results"]]
    assert [g[0] for g in got] == [ids[name] for name, _, _ in expected]
    for (_, score, cell), (_, want, want_cell) in zip(got, expected):
        assert score == pytest.approx(float(want), abs=1e-3) and cell == want_cell

    # The same box on an uploaded copy of the image gives the same ranking.
    upload = client.post(f"/api/v1/albums/{album.pk}/search/",
                         {"image": io.BytesIO(files["2.png"]), "box": ",".join(map(str, CELL_1_1)), "min_score": -1},
                         format="multipart")
    assert upload.status_code == 200, upload.json()
    assert [r["image_id"] for r in upload.json()["results"]] == [g[0] for g in got]
    # And the box travels to a query worker when encoding happens there.
    settings.LOUPE_QUERY_ENCODING = "worker"
    via_worker = _search(client, album, image_id=ids["2.png"], box=CELL_1_1, min_score=-1)
    assert via_worker.status_code == 200, via_worker.json()
    assert [(r["image_id"], r["region"]["cell"]) for r in via_worker.json()["results"]] == [(g[0], g[2]) for g in got]
    settings.LOUPE_QUERY_ENCODING = "web"

    # Whole-image search and more-like-this still work on the stored global mean.
    similar = client.get(f"/api/v1/images/{ids['1.png']}/similar/?min_score=-1").json()
    assert len(similar["results"]) == len(files) - 1
    # Image-only backbone: text is a clear 400; so is a malformed box.
    text = _search(client, album, text="a person", min_score=-1)
    assert text.status_code == 400 and text.json()["code"] == "encoder_modality_unsupported"
    assert _search(client, album, image_id=ids["1.png"], box=[0.5, 0.5, 0.2, 0.9]).status_code == 400
    assert _search(client, album, box=CELL_1_1).json()["code"] == "box_needs_image"

    # Somebody else's album: the same 404 as a missing one, for box queries too.
    foreign = _search(client_for(bob), album, image_id=ids["2.png"], box=CELL_1_1)
    missing = client_for(bob).post(f"/api/v1/albums/{album.pk + 10_000}/search/", {"image_id": 1, "box": CELL_1_1},
                                   format="json")
    assert foreign.status_code == 404 and foreign.json() == missing.json()

    # Deleting an image deletes its region tokens.
    assert client.delete(f"/api/v1/images/{ids['2.png']}/").status_code == 204
    assert not RegionEmbedding.objects.filter(image_id=ids["2.png"]).exists()
    assert RegionEmbedding.objects.filter(album=album).count() == 12 * (len(files) - 1)


def test_a_box_on_an_album_without_region_tokens_says_why(worker, alice, client_for):
    album, _, ids = _album(alice, count=2)
    response = _search(client_for(alice), album, image_id=ids["0.png"], box=CELL_1_1)
    assert response.status_code == 400 and response.json()["code"] == "regions_not_indexed"


def _rgba_png(alpha_left: bool) -> bytes:
    rng = np.random.default_rng(7 if alpha_left else 8)
    pixels = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    pixels[..., 3] = 0
    pixels[:, :20, 3] = 255  # a person on the left half, transparent background
    out = io.BytesIO()
    PILImage.fromarray(pixels, "RGBA").save(out, format="PNG")
    return out.getvalue()


def test_masked_album_pools_the_alpha_foreground_and_records_fallbacks(worker, alice, client_for):
    album = services.album_create(owner=alice, name="cut-outs", encoder_spec=DINOV2_TINY, pooling="masked")
    files = {"cutout.png": _rgba_png(True), "photo.png": noise_png(size=(40, 40), seed=5)}
    results = services.image_upload_many(album=album, user=alice, files=[(n, io.BytesIO(d)) for n, d in files.items()])
    ids = {r.name: r.image_id for r in results}
    assert _finished_job(album).status == "succeeded"
    album.refresh_from_db()
    assert album.active_model_id.endswith("+pooling=masked")
    rows = {row.image_id: row for row in Embedding.objects.filter(album=album)}
    assert rows[ids["cutout.png"]].pooling_note == ""
    assert rows[ids["photo.png"]].pooling_note == pooling.NO_MASK
    # The stored vector is the masked mean of the foreground, as computed here from the file.
    encoder = PooledEncoder(get_encoder(DINOV2_TINY, device="cpu"), pooling="masked")
    expected = encoder.embed([PILImage.open(io.BytesIO(files["cutout.png"]))]).vectors[0]
    np.testing.assert_allclose(np.asarray(rows[ids["cutout.png"]].vector), expected, atol=1e-5)
    mean = PooledEncoder(encoder.encoder).embed([PILImage.open(io.BytesIO(files["cutout.png"]))]).vectors[0]
    assert not np.allclose(expected, mean, atol=1e-3)
    # Query by the same cut-out: encoded with the same masked pooling, so it finds itself at cosine 1.
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/search/",
                                      {"image": io.BytesIO(files["cutout.png"]), "min_score": -1}, format="multipart")
    assert response.status_code == 200, response.json()
    assert response.json()["results"][0]["image_id"] == ids["cutout.png"]
    assert response.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_changing_pooling_or_storage_rebuilds_under_a_new_model_id(worker, alice, client_for):
    album, files, ids = _album(alice, count=3, spec=DINOV2_TINY)
    before = album.active_model_id
    client = client_for(alice)
    response = client.patch(f"/api/v1/albums/{album.pk}/", {"pooling": "regions", "vector_storage": "binary"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["generation"] == album.generation + 1
    job = _finished_job(album, kind="rebuild")
    assert job.status == "succeeded", job.message
    album.refresh_from_db()
    assert album.active_model_id == before + "+pooling=regions-4x3+storage=binary"
    assert set(Embedding.objects.filter(album=album).values_list("model_id", flat=True)) == {album.active_model_id}
    assert RegionEmbedding.objects.filter(album=album, model_id=album.active_model_id).count() == 12 * len(files)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE %s", [f"%{album.active_model_id}%"])
        definitions = dict(cursor.fetchall())
    assert set(definitions) == {"search_embedding", "search_regionembedding"}  # vectors and region tokens
    assert all("binary_quantize" in d and "bit_hamming_ops" in d for d in definitions.values())
    # Search through the binary index, re-scored in float32: an image finds itself at cosine 1.
    body = _search(client, album, image_id=ids["1.png"], image_weight=1, min_score=-1).json()
    similar = client.get(f"/api/v1/images/{ids['1.png']}/similar/?min_score=-1").json()
    assert len(similar["results"]) == len(files) - 1 and body["model_id"] == album.active_model_id
    # Box queries go through the binary region index the same way, re-scored exactly.
    boxed = _search(client, album, image_id=ids["1.png"], box=[0, 0, 1, 1], min_score=-1).json()
    assert len(boxed["results"]) == len(files) and boxed["results"][0]["image_id"] == ids["1.png"]


def test_pooling_other_than_mean_needs_a_dense_backbone(alice, client_for, db, settings, tiny_models_dir):
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOWED_ENCODERS = []
    client = client_for(alice)
    created = client.post("/api/v1/albums/", {"name": "clip", "encoder_spec": OPEN_CLIP_TINY, "pooling": "regions"},
                          format="json")
    assert created.status_code == 400 and created.json()["code"] == "pooling_unsupported"
    album = services.album_create(owner=alice, name="clip", encoder_spec=OPEN_CLIP_TINY)
    response = client.patch(f"/api/v1/albums/{album.pk}/", {"pooling": "masked"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "pooling_unsupported"
    assert Album.objects.get(pk=album.pk).pooling == "mean"
    assert client.patch(f"/api/v1/albums/{album.pk}/", {"vector_storage": "float8"}, format="json").status_code == 400
    # The settings page shows Sapiens2's use restrictions when that backbone is chosen.
    sapiens = services.album_create(owner=alice, name="s2", encoder_spec="dense:sapiens2-1b")
    assert "identifying" in client.get(f"/api/v1/albums/{sapiens.pk}/").json()["responsible_use"]
    assert client.get(f"/api/v1/albums/{album.pk}/").json()["responsible_use"] is None


def test_settings_page_offers_pooling_and_storage_and_shows_the_sapiens2_notice(alice, bob, db, settings, tiny_models_dir):
    from django.test import Client

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOWED_ENCODERS = []
    album = services.album_create(owner=alice, name="people", encoder_spec=DINOV2_TINY)
    client = Client()
    client.force_login(alice)
    page = client.get(f"/albums/{album.pk}/settings/").content.decode()
    assert 'name="pooling"' in page and 'name="vector_storage"' in page
    assert 'id="responsible-use" hidden' in page  # shown by the page's script only if Sapiens2 is picked
    form = {"name": "people", "description": "", "encoder_spec": DINOV2_TINY, "pooling": "regions",
            "vector_storage": "halfvec", "max_search_results": "100", "use_query_optimization": "on"}
    assert client.post(f"/albums/{album.pk}/settings/", form).status_code == 302
    album.refresh_from_db()
    assert (album.pooling, album.vector_storage, album.generation) == ("regions", "halfvec", 2)
    # Choosing Sapiens2 shows the license's restrictions on the page, before and after saving.
    form["encoder_spec"] = SAPIENS2_TINY
    response = client.post(f"/albums/{album.pk}/settings/", form, follow=True).content.decode()
    assert "identifying or re-identifying individuals" in response and 'id="responsible-use" hidden' not in response
    assert "license: no biometric or identity use" in response  # in the encoder list too
    # A pooling a CLIP encoder cannot do is refused with the reason, and nothing changes.
    form.update(encoder_spec=OPEN_CLIP_TINY, pooling="masked")
    refused = client.post(f"/albums/{album.pk}/settings/", form)
    assert refused.status_code == 200 and "needs a dense backbone" in refused.content.decode()
    assert Album.objects.get(pk=album.pk).encoder_spec == SAPIENS2_TINY
    # Somebody else cannot even see the page.
    other = Client()
    other.force_login(bob)
    assert other.get(f"/albums/{album.pk}/settings/").status_code == 404


def test_search_page_offers_box_drawing_only_on_regions_albums(alice, db, settings, tiny_models_dir):
    from django.test import Client

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOWED_ENCODERS = []
    client = Client()
    client.force_login(alice)
    regions = services.album_create(owner=alice, name="regions", encoder_spec=DINOV2_TINY, pooling="regions")
    plain = services.album_create(owner=alice, name="plain", encoder_spec=DINOV2_TINY)
    Album.objects.filter(pk=regions.pk).update(active_model_id=f"{DINOV2_TINY}@sha256:0123456789ab+pooling=regions-4x3")
    Album.objects.filter(pk=plain.pk).update(active_model_id=f"{DINOV2_TINY}@sha256:0123456789ab")
    assert 'id="box-picker"' in client.get(f"/albums/{regions.pk}/search/").content.decode()
    assert 'id="box-picker"' not in client.get(f"/albums/{plain.pk}/search/").content.decode()
