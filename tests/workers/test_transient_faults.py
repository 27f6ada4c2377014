"""A transient fault must not fail an image for ever (issue #16, "Faults"): running out of memory
and storage I/O errors are retried, not recorded against the image; a chunk that keeps failing for
another cause ends its job with the reason; failed images can be retried; the recovery sweep
re-queues only metadata no task holds; a broker outage during a search is a 503 that says so."""

from __future__ import annotations

import errno
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from albums import services as album_services
from albums.models import Image
from tests.images import image_bytes, noise_png, truncated
from tests.tiny_models import OPEN_CLIP_TINY
from workers import pipeline

pytestmark = pytest.mark.django_db


class MemoryBoundEncoder:
    """The real tiny encoder behind a memory limit: a forward pass of more than `max_rows` rows
    raises what CUDA raises when it runs out of memory."""

    def __init__(self, encoder, max_rows: int):
        self.encoder, self.max_rows, self.dim = encoder, max_rows, encoder.dim
        self.rows: list[int] = []

    def encode_images(self, images, batch_size=None):
        self.rows.append(len(images))
        if len(images) > self.max_rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.encoder.encode_images(images, batch_size=batch_size)


@pytest.fixture
def stored(settings, tiny_models_dir, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_DEVICE = "cpu"
    return [(1000 + i, default_storage.save(f"img/{i}.png", ContentFile(noise_png(size=(40, 40), seed=i))))
            for i in range(20)]


def _embed(encoder, items):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return pipeline.embed_stored_images(encoder, items, pool=pool, micro_batch=16)


def test_out_of_memory_halves_the_batch_and_fails_no_image(stored):
    from encoders.registry import get_encoder

    encoder = MemoryBoundEncoder(get_encoder(OPEN_CLIP_TINY), max_rows=8)
    result = _embed(encoder, stored)
    assert result.failures == {}
    assert result.image_ids == [image_id for image_id, _ in stored]
    expected = _embed(get_encoder(OPEN_CLIP_TINY), stored).vectors
    assert np.allclose(result.vectors, expected, atol=1e-5)
    assert 16 in encoder.rows and max(r for r in encoder.rows if r <= 8) == 8  # tried whole, then halves


def test_out_of_memory_on_one_image_is_transient_and_marks_nothing(stored):
    from encoders.registry import get_encoder

    with pytest.raises(pipeline.EncoderOutOfMemoryError):
        _embed(MemoryBoundEncoder(get_encoder(OPEN_CLIP_TINY), max_rows=0), stored)


def test_a_storage_io_error_is_transient_and_damaged_data_is_not(stored, monkeypatch):
    from albums.storage import StorageUnavailableError
    from encoders.registry import get_encoder

    real_open = default_storage.open

    def flaky(name, mode="rb"):
        if name == stored[3][1]:
            raise OSError(errno.EIO, "Input/output error")
        return real_open(name, mode)

    monkeypatch.setattr(default_storage, "open", flaky)
    with pytest.raises(StorageUnavailableError):
        _embed(get_encoder(OPEN_CLIP_TINY), stored)
    monkeypatch.undo()
    damaged = default_storage.save("img/damaged.png", ContentFile(truncated(noise_png(size=(40, 40), seed=99))))
    result = _embed(get_encoder(OPEN_CLIP_TINY), [*stored, (2000, damaged)])
    assert list(result.failures) == [2000] and "decode" in result.failures[2000]


def test_metadata_leaves_images_alone_on_a_storage_error_and_fails_damaged_ones(alice, album, monkeypatch):
    from albums.storage import StorageUnavailableError
    from workers import services

    results = album_services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    image = Image.objects.get(pk=results[0].image_id)
    real_open = type(image.file).open

    def broken(field, mode="rb"):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(type(image.file), "open", broken)
    with pytest.raises(StorageUnavailableError):
        services.image_process_metadata(image_ids=[image.pk])
    image.refresh_from_db()
    assert image.status != Image.Status.FAILED and image.failure_reason == ""
    monkeypatch.setattr(type(image.file), "open", real_open)
    with default_storage.open(image.file.name, "wb") as fp:
        fp.write(truncated(image_bytes("PNG", size=(300, 300))))
    assert services.image_process_metadata(image_ids=[image.pk]) == {"done": 0, "failed": 1}
    image.refresh_from_db()
    assert image.status == Image.Status.FAILED and image.failure_reason


def test_a_chunk_that_keeps_failing_ends_its_job_with_the_reason(alice, album, settings, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from workers import indexing, tasks
    from workers.models import IndexJob

    settings.LOUPE_CHUNK_MAX_ATTEMPTS = 3
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.INDEX, status=IndexJob.Status.RUNNING, total=3)
    calls = []

    def too_slow(**kwargs):
        calls.append(kwargs)
        raise SoftTimeLimitExceeded("SoftTimeLimitExceeded()")

    monkeypatch.setattr(indexing, "index_batch_run", too_slow)
    outcome = tasks.encode_index_batch.apply(args=(job.pk, 0, [1, 2, 3]))
    job.refresh_from_db()
    assert len(calls) == 3
    assert job.status == IndexJob.Status.FAILED
    assert job.message.startswith("Chunk 0 failed 3 times: SoftTimeLimitExceeded")
    assert outcome.result == {"failed": job.message}


def test_retry_failed_images_by_api_and_command(alice, bob, album, member_of, client_for, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    from workers.models import IndexJob

    uploads = album_services.image_upload_many(
        album=album, user=alice, files=[(f"{i}.jpg", io.BytesIO(image_bytes(color=(i * 60, 9, 9)))) for i in range(3)]
    )
    ids = [r.image_id for r in uploads]
    Image.objects.filter(pk__in=ids[:2]).update(status=Image.Status.FAILED, failure_reason="CUDA out of memory")
    member_of(bob)  # a viewer: may not
    url = f"/api/v1/albums/{album.pk}/retry-failed/"
    assert client_for(bob).post(url).json()["code"] == "role_required"
    from django.contrib.auth import get_user_model

    stranger = client_for(get_user_model().objects.create_user("mallory"))
    assert stranger.post(url).status_code == 404
    assert Image.objects.filter(status=Image.Status.FAILED).count() == 2
    with django_capture_on_commit_callbacks(execute=False):
        body = client_for(alice).post(url).json()
    assert body["retried"] == 2 and IndexJob.objects.filter(pk=body["job_id"], album=album).exists()
    assert set(Image.objects.filter(pk__in=ids).values_list("status", "failure_reason")) == {("pending", "")}
    Image.objects.filter(pk=ids[0]).update(status=Image.Status.FAILED, failure_reason="I/O error")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("retry_failed_images", "--album", str(album.pk), stdout=out)
    assert "1 image(s) retried in all." in out.getvalue()
    assert not Image.objects.filter(status=Image.Status.FAILED).exists()


def test_the_sweep_requeues_only_metadata_no_task_holds(alice, album, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from workers import recovery, services
    from workers.tasks import image_process_metadata

    uploads = album_services.image_upload_many(
        album=album, user=alice, files=[(f"{i}.jpg", io.BytesIO(image_bytes(color=(i * 60, 1, 1)))) for i in range(3)]
    )
    ids = [r.image_id for r in uploads]
    Image.objects.filter(pk__in=ids).update(created_at=timezone.now() - timedelta(hours=1))
    queued = []
    monkeypatch.setattr(image_process_metadata, "delay", lambda image_ids: queued.append(list(image_ids)))
    services.metadata_marks_clear(ids)
    services.image_metadata_enqueue(image_ids=ids[:2])  # a backlog still waiting in the queue
    queued.clear()
    assert recovery.resume_pending_work()["metadata"] == [ids[2]]
    assert recovery.resume_pending_work()["metadata"] == []  # now held by the task just queued
    services.metadata_marks_clear(ids[:1])  # that task ended without a thumbnail (a lost worker, say)
    assert recovery.resume_pending_work()["metadata"] == [ids[0]]
    services.metadata_marks_clear(ids)


def test_a_broker_outage_during_a_search_is_a_503_broker_unavailable(alice, album, client_for, settings, monkeypatch):
    from kombu.exceptions import OperationalError

    from albums.models import Album
    from search import tasks as search_tasks

    settings.LOUPE_QUERY_ENCODING = "worker"
    Album.objects.filter(pk=album.pk).update(active_model_id="open-clip:tiny-vit/random@sha256:0123456789ab",
                                             encoder_spec="open-clip:tiny-vit/random")

    def refused(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr(search_tasks.query_encode, "apply_async", refused)
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/search/", {"text": "a red sled"}, format="json")
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "broker_unavailable" and response["Retry-After"] == "5"


def test_a_chunk_whose_worker_keeps_dying_ends_its_job(alice, album, settings, monkeypatch):
    """Killed by the hard time limit or the OOM killer, a worker never raises: the message comes back
    (late acknowledgement) and the chunk starts again. Such lost runs count as attempts too."""
    from django.core.cache import cache

    from workers import indexing, tasks
    from workers.models import IndexJob

    settings.LOUPE_CHUNK_MAX_ATTEMPTS = 2
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.INDEX, status=IndexJob.Status.RUNNING, total=3)
    ran = []
    monkeypatch.setattr(indexing, "index_batch_run", lambda **kwargs: ran.append(kwargs) or {"written": 3})
    assert tasks.encode_index_batch.apply(args=(job.pk, 0, [1, 2, 3])).result == {"written": 3}
    cache.set(f"loupe:chunk-runs:{job.pk}:1", 2)  # two earlier runs of chunk 1 that never ended
    outcome = tasks.encode_index_batch.apply(args=(job.pk, 1, [4, 5, 6])).result
    job.refresh_from_db()
    assert len(ran) == 1 and job.status == IndexJob.Status.FAILED
    assert outcome == {"failed": job.message} and job.message.startswith("Chunk 1 was lost with its worker 2 times")
