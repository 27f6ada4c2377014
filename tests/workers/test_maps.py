"""The semantic map through a real Celery worker: tiny real encoders index small albums of two
visibly different kinds (noise, flat colours), the map job lays them out, new uploads are placed
without a refit, an encoder switch builds the new model's map beside the old one."""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from albums import services
from albums.models import Image
from albums.roles import Role
from tests.conftest import upload_and_index, wait_for
from tests.images import image_bytes, noise_png
from tests.tiny_models import OPEN_CLIP_TINY, OPENAI_CLIP_TINY
from workers.models import AlbumMap, IndexJob, MapCluster, MapPoint

pytestmark = pytest.mark.slow


def _photos(kind: str, count: int, start: int = 0) -> dict[str, bytes]:
    if kind == "noise":
        return {f"noise{i}.png": noise_png(size=(48, 48), seed=i) for i in range(start, start + count)}
    return {f"flat{i}.png": image_bytes("PNG", size=(48, 48), color=(20 + i * 11 % 200, 160, 90)) for i in
            range(start, start + count)}


def _map_job_after(album, seen: int, *, timeout: float = 180) -> IndexJob:
    """The first map job of the album after job id `seen`, once it has ended."""
    def ended():
        job = IndexJob.objects.filter(album=album, kind="map", pk__gt=seen).order_by("pk").first()
        return job if job is not None and not job.is_active else None

    return wait_for(ended, timeout=timeout, what="the map job to end")


def _upload(album, user, named: dict[str, bytes]) -> list[int]:
    files = [(name, io.BytesIO(data)) for name, data in named.items()]
    return [r.image_id for r in services.image_upload_many(album=album, user=user, files=files)]


def test_a_map_is_built_on_request_and_new_uploads_are_placed_without_a_refit(worker, alice, make_user, client_for):
    album = services.album_create(owner=alice, name="map", encoder_spec=OPEN_CLIP_TINY)
    editor = make_user("editor")
    services.album_member_add(album=album, username="editor", role=Role.EDITOR)
    api = client_for(alice)
    ids = upload_and_index(api, album, {**_photos("noise", 10), **_photos("flat", 10)})
    started = client_for(editor).post(f"/api/v1/albums/{album.pk}/map/rebuild/")
    assert started.status_code == 202, started.content
    job = _map_job_after(album, 0)
    assert started.json()["job"]["id"] == job.pk
    assert (job.status, job.done, job.total) == ("succeeded", job.total, 4), job.message

    body = api.get(f"/api/v1/albums/{album.pk}/map/").json()
    assert (body["state"], body["count"], body["unplaced"]) == ("ready", 20, 0)
    assert sorted(body["points"]["image_id"]) == sorted(ids.values())
    xy = np.array([body["points"]["x"], body["points"]["y"]]).T
    assert np.all(np.abs(xy) <= 1) and np.isclose(np.abs(xy).max(), 1.0, atol=1e-3)  # scaled into the box
    # The two kinds stay apart: each image's nearest neighbour on the map is of its own kind.
    kind = {image_id: name.startswith("noise") for name, image_id in ids.items()}
    kinds = np.array([kind[i] for i in body["points"]["image_id"]])
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 9
    assert np.mean(kinds[distances.argmin(axis=1)] == kinds) >= 0.9
    clusters = body["clusters"]
    assert clusters and all(c["terms"] and c["name"] and c["medoid_image_ids"] for c in clusters)  # a text encoder
    on_map = set(body["points"]["image_id"])
    assert all(set(c["medoid_image_ids"]) <= on_map for c in clusters)
    assert sum(c["size"] for c in clusters) == sum(1 for c in body["points"]["cluster"] if c >= 0)
    fitted = AlbumMap.objects.get(album=album)
    assert (fitted.fitted_count, fitted.placed_count) == (20, 0)

    # 3 new images (15 % of 20, under LOUPE_MAP_REFIT_SHARE): placed after indexing, nothing refitted.
    new = _upload(album, alice, _photos("noise", 3, start=10))
    placed_job = _map_job_after(album, job.pk)
    assert placed_job.status == "succeeded" and "without a refit" in placed_job.message, placed_job.message
    fitted_after = AlbumMap.objects.get(album=album)
    assert (fitted_after.fitted_at, fitted_after.fitted_count, fitted_after.placed_count) == (fitted.fitted_at, 20, 3)
    placed = MapPoint.objects.filter(album=album, image_id__in=new)
    assert placed.count() == 3 and all(p.placed and abs(p.x) <= 1 and abs(p.y) <= 1 for p in placed)
    body = api.get(f"/api/v1/albums/{album.pk}/map/").json()
    assert (body["count"], body["unplaced"]) == (23, 0)

    # 2 more: 5 placed since the fit passes 20 % of 20, so the map is fitted again from all 25.
    _upload(album, alice, _photos("flat", 2, start=10))
    refit_job = _map_job_after(album, placed_job.pk)
    assert refit_job.status == "succeeded" and refit_job.message.startswith("Mapped 25 images"), refit_job.message
    refitted = AlbumMap.objects.get(album=album)
    assert refitted.fitted_at > fitted.fitted_at and (refitted.fitted_count, refitted.placed_count) == (25, 0)
    assert not MapPoint.objects.filter(album=album, placed=True).exists()

    # On request too, whatever the share.
    again = api.post(f"/api/v1/albums/{album.pk}/map/rebuild/")
    assert _map_job_after(album, refit_job.pk).pk == again.json()["job"]["id"]
    assert AlbumMap.objects.get(album=album).fitted_at > refitted.fitted_at


def test_an_encoder_switch_builds_the_new_models_map_and_images_without_vectors_stay_off_it(worker, alice, client_for):
    album = services.album_create(owner=alice, name="switch map", encoder_spec=OPEN_CLIP_TINY)
    with transaction.atomic():
        ids = _upload(album, alice, {**_photos("noise", 6), **_photos("flat", 6)})
        # One stored file cut short before the worker reads it: indexing marks it failed.
        damaged = Image.objects.get(pk=ids[0])
        with open(default_storage.path(damaged.file.name), "wb") as fp:
            fp.write(b"\x89PNG\r\n\x1a\n")
    wait_for(lambda: Image.objects.filter(album=album, status="indexed").count() == 11
             and not IndexJob.objects.filter(album=album, status__in=IndexJob.ACTIVE_STATUSES).exists(),
             timeout=120, what="indexing to settle")
    api = client_for(alice)
    assert api.post(f"/api/v1/albums/{album.pk}/map/rebuild/").status_code == 202
    first = _map_job_after(album, 0)
    assert first.status == "succeeded", first.message
    old_model = first.model_id
    assert set(MapPoint.objects.filter(album=album).values_list("image_id", flat=True)) == set(ids[1:])

    assert api.patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": OPENAI_CLIP_TINY}, format="json").status_code == 200
    assert AlbumMap.objects.filter(album=album, model_id=old_model).exists()  # kept while the new one is made
    rebuilt = wait_for(lambda: IndexJob.objects.filter(album=album, kind="map", pk__gt=first.pk, status="succeeded")
                       .first(), timeout=180, what="the new model's map")
    album.refresh_from_db()
    assert rebuilt.model_id == album.active_model_id != old_model
    assert list(AlbumMap.objects.filter(album=album).values_list("model_id", flat=True)) == [album.active_model_id]
    assert set(MapPoint.objects.filter(album=album).values_list("model_id", flat=True)) == {album.active_model_id}
    assert not MapCluster.objects.filter(album=album, model_id=old_model).exists()
    body = api.get(f"/api/v1/albums/{album.pk}/map/").json()
    assert (body["model_id"], body["state"], body["count"]) == (album.active_model_id, "ready", 11)
