"""Indexing through a real Celery worker with tiny real encoders loaded from a models directory."""

import io

import numpy as np
import pytest

from albums import services
from albums.models import Image
from search.models import Embedding
from tests.conftest import wait_for
from tests.images import image_bytes
from tests.tiny_models import OPEN_CLIP_TINY, OPENAI_CLIP_TINY
from workers.models import IndexJob

pytestmark = pytest.mark.slow


def _upload(album, user, count, *, start=0):
    files = [(f"{i}.png", io.BytesIO(image_bytes("PNG", size=(40 + i, 30), color=(i * 9 % 256, 80, 200 - i))))
             for i in range(start, start + count)]
    return [r.image_id for r in services.image_upload_many(album=album, user=user, files=files)]


def _finished_job(album, *, kind=None, timeout=60):
    def done():
        jobs = IndexJob.objects.filter(album=album).exclude(status__in=IndexJob.ACTIVE_STATUSES)
        if kind:
            jobs = jobs.filter(kind=kind)
        active = IndexJob.objects.filter(album=album, status__in=IndexJob.ACTIVE_STATUSES).exists()
        return not active and jobs.order_by("-pk").first()

    return wait_for(done, timeout=timeout, what="the indexing job to finish")


def test_upload_indexes_automatically_one_vector_per_image(worker, alice, settings):
    album = services.album_create(owner=alice, name="auto", encoder_spec=OPEN_CLIP_TINY)
    ids = _upload(album, alice, 7)
    job = _finished_job(album)
    assert job.status == IndexJob.Status.SUCCEEDED, job.message
    assert (job.total, job.done, job.failed) == (7, 7, 0)
    album.refresh_from_db()
    assert album.active_model_id == job.model_id and job.model_id.startswith(OPEN_CLIP_TINY + "@")
    rows = Embedding.objects.filter(image__album=album)
    assert sorted(rows.values_list("image_id", flat=True)) == sorted(ids)
    assert set(rows.values_list("model_id", "dim")) == {(job.model_id, 32)}
    for row in rows:
        assert np.isclose(np.linalg.norm(np.asarray(row.vector, dtype=np.float32)), 1.0, atol=1e-5)
    assert set(Image.objects.filter(album=album).values_list("status", flat=True)) == {"indexed"}


def test_a_bad_image_is_recorded_and_the_rest_indexed(worker, alice, client_for, monkeypatch):
    import workers.indexing
    import workers.services

    album = services.album_create(owner=alice, name="bad", encoder_spec=OPEN_CLIP_TINY)
    # No automatic job or metadata task: the indexer is the first to read the file it finds damaged.
    monkeypatch.setattr(workers.indexing, "index_job_start", lambda **kw: (None, False))
    monkeypatch.setattr(workers.services, "image_metadata_enqueue", lambda **kw: None)
    ids = _upload(album, alice, 4)
    monkeypatch.undo()
    broken = Image.objects.get(pk=ids[1])
    with open(broken.file.path, "r+b") as fp:
        fp.truncate(60)  # damaged on disk after upload
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/index/")
    assert response.status_code == 202
    job = _finished_job(album)
    assert job.status == "succeeded" and (job.done, job.failed) == (4, 1)
    broken.refresh_from_db()
    assert broken.status == "failed" and "decode" in broken.failure_reason
    assert sorted(Embedding.objects.filter(image__album=album).values_list("image_id", flat=True)) == sorted(
        set(ids) - {broken.pk}
    )
    # Nothing left to do: a second request is an empty job, not a re-encode.
    again = client_for(alice).post(f"/api/v1/albums/{album.pk}/index/").json()
    job = _finished_job(album)
    assert job.pk == again["id"] and job.total == 0


def test_missing_weights_fail_the_job_once_with_the_message(worker, alice):
    album = services.album_create(owner=alice, name="nowt", encoder_spec="open-clip:ViT-B-32/laion2b_s34b_b79k")
    _upload(album, alice, 2)
    job = _finished_job(album)
    assert job.status == "failed"
    assert "ViT-B-32" in job.message and ("models" in job.message.lower())
    assert not Embedding.objects.filter(image__album=album).exists()
    assert set(Image.objects.filter(album=album).values_list("status", flat=True)) == {"pending"}


def test_encoder_change_rebuilds_beside_the_old_vectors_then_switches(worker, alice, client_for):
    album = services.album_create(owner=alice, name="switch", encoder_spec=OPEN_CLIP_TINY)
    ids = _upload(album, alice, 5)
    first = _finished_job(album)
    album.refresh_from_db()
    old_model = album.active_model_id
    response = client_for(alice).patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": OPENAI_CLIP_TINY}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["generation"] == 2
    # Until the rebuild completes, search keeps the old model (whose vectors are all still there).
    if body["index"]["active_job"]:
        assert body["index"]["rebuilding"] is True
        assert body["active_model_id"] == old_model
    job = _finished_job(album, kind="rebuild")
    assert job.status == "succeeded", job.message
    album.refresh_from_db()
    assert album.active_model_id == job.model_id != old_model
    assert job.model_id.startswith(OPENAI_CLIP_TINY + "@")
    rows = Embedding.objects.filter(image__album=album)
    assert sorted(rows.values_list("image_id", flat=True)) == sorted(ids)
    assert set(rows.values_list("model_id", flat=True)) == {job.model_id}
    assert "Removed 5 vector(s)" in job.message and first.pk != job.pk


def test_changing_back_during_a_rebuild_keeps_the_original(worker, alice, client_for):
    album = services.album_create(owner=alice, name="back", encoder_spec=OPEN_CLIP_TINY)
    ids = _upload(album, alice, 6)
    _finished_job(album)
    album.refresh_from_db()
    original = album.active_model_id
    client = client_for(alice)
    client.patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": OPENAI_CLIP_TINY}, format="json")
    client.patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": OPEN_CLIP_TINY}, format="json")
    job = _finished_job(album, kind="rebuild")
    assert job.status == "succeeded"
    album.refresh_from_db()
    assert album.generation == 3 and album.active_model_id == original
    assert set(Embedding.objects.filter(image__album=album).values_list("model_id", flat=True)) == {original}
    assert Embedding.objects.filter(image__album=album).count() == len(ids)
    superseded = IndexJob.objects.filter(album=album, kind="rebuild").order_by("pk").first()
    assert superseded.status == "cancelled" and "Superseded" in superseded.message


def test_hnsw_index_exists_for_the_model(worker, alice):
    from django.db import connection

    from search.vector_store import index_name

    album = services.album_create(owner=alice, name="hnsw", encoder_spec=OPEN_CLIP_TINY)
    _upload(album, alice, 2)
    job = _finished_job(album)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name(job.model_id, 32)])
        [definition] = cursor.fetchone()
    assert "hnsw" in definition and "vector(32)" in definition and job.model_id in definition
    assert "ef_construction='128'" in definition.replace(" ", "") or "ef_construction=128" in definition.replace(" ", "")


def test_jobs_join_and_cancel(worker, alice, bob, client_for):
    album = services.album_create(owner=alice, name="join", encoder_spec=OPEN_CLIP_TINY)
    client = client_for(alice)
    first = client.post(f"/api/v1/albums/{album.pk}/index/")
    second = client.post(f"/api/v1/albums/{album.pk}/index/")
    assert first.status_code == 202
    assert second.status_code in (200, 202)
    if second.status_code == 200:
        assert second.json()["id"] == first.json()["id"]
    job_id = second.json()["id"]
    services.album_member_add(album=album, username="bob", role="viewer")
    assert client_for(bob).post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 403
    body = client.post(f"/api/v1/jobs/{job_id}/cancel/").json()
    assert body["status"] in ("cancelled", "succeeded")
    album_body = client.get(f"/api/v1/albums/{album.pk}/").json()
    assert album_body["index"]["active_job"] is None
