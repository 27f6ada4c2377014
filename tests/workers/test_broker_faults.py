"""Indexing when the broker misbehaves, without a worker: a job task delivered twice, a job that
cannot be queued, and a dispatch cut off half-way. (Real outages: bench/faults.py, docs/reliability.md.)"""

import io

import pytest
from kombu.exceptions import OperationalError

from albums import services
from tests.images import image_bytes
from tests.tiny_models import OPEN_CLIP_TINY
from workers import indexing
from workers.models import IndexJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def album_with_images(alice, settings, tiny_models_dir, django_capture_on_commit_callbacks, monkeypatch):
    # CREATE INDEX CONCURRENTLY cannot run in the test's transaction; the index is not under test here.
    monkeypatch.setattr(indexing, "hnsw_index_ensure", lambda **kwargs: None)
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_DEVICE = "cpu"
    settings.LOUPE_INDEX_CHUNK = 2
    album = services.album_create(owner=alice, name="faults", encoder_spec=OPEN_CLIP_TINY)
    files = [(f"{i}.png", io.BytesIO(image_bytes("PNG", color=(i * 40, 10, 10)))) for i in range(5)]
    with django_capture_on_commit_callbacks(execute=False):  # no broker traffic from the uploads
        services.image_upload_many(album=album, user=alice, files=files)
    return album


def test_a_job_task_delivered_twice_is_planned_once(album_with_images, django_capture_on_commit_callbacks):
    job = IndexJob.objects.create(album=album_with_images, kind=IndexJob.Kind.INDEX)
    with django_capture_on_commit_callbacks(execute=False) as first:
        assert indexing.index_job_run(job_id=job.pk) == {"total": 5, "batches": 3}
    with django_capture_on_commit_callbacks(execute=False) as second:
        assert indexing.index_job_run(job_id=job.pk) == {"skipped": "already planned"}
    assert len(first) == 1 and second == []  # one dispatch of the chunks, not two
    job.refresh_from_db()
    assert (job.status, job.total) == ("running", 5)


def test_a_job_the_broker_refuses_fails_with_the_reason_and_does_not_block_the_next(
    album_with_images, alice, monkeypatch, django_capture_on_commit_callbacks
):
    from workers.tasks import encode_index_job

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr(encode_index_job, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        job, created = indexing.index_job_start(album=album_with_images, user=alice)
    job.refresh_from_db()
    assert created and job.status == "failed" and "broker unavailable" in job.message
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=False):
        again, created = indexing.index_job_start(album=album_with_images, user=alice)
    assert created and again.pk != job.pk


def test_a_dispatch_cut_off_half_way_ends_the_job(album_with_images, monkeypatch, django_capture_on_commit_callbacks):
    from workers.tasks import encode_index_batch

    sent = []

    def flaky(*args):
        if sent:
            raise OperationalError("Connection closed by server.")
        sent.append(args)

    monkeypatch.setattr(encode_index_batch, "delay", flaky)
    job = IndexJob.objects.create(album=album_with_images, kind=IndexJob.Kind.INDEX)
    with django_capture_on_commit_callbacks(execute=True):
        indexing.index_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert len(sent) == 1
    assert job.status == "failed" and "Dispatch stopped" in job.message


# --- the recovery sweep once the broker is back (workers/recovery.py) ----------------------------


def _refused_job(album, alice, monkeypatch, django_capture_on_commit_callbacks) -> IndexJob:
    from workers.tasks import encode_index_job

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    with monkeypatch.context() as patched:
        patched.setattr(encode_index_job, "apply_async", refuse)
        with django_capture_on_commit_callbacks(execute=True):
            job, _ = indexing.index_job_start(album=album, user=alice)
    job.refresh_from_db()
    assert job.status == "failed"
    return job


@pytest.fixture
def sent_jobs(monkeypatch):
    """What the sweep queues, recorded instead of sent (no worker in these tests)."""
    from workers.tasks import encode_index_job, image_process_metadata

    sent = {"jobs": [], "metadata": []}
    monkeypatch.setattr(encode_index_job, "apply_async", lambda args, **kw: sent["jobs"].append(args[0]))
    monkeypatch.setattr(image_process_metadata, "delay", lambda ids: sent["metadata"].append(ids))
    return sent


def test_the_sweep_restarts_a_job_the_broker_refused_and_requeues_lost_metadata(
    album_with_images, alice, monkeypatch, django_capture_on_commit_callbacks, sent_jobs
):
    from workers import recovery

    refused = _refused_job(album_with_images, alice, monkeypatch, django_capture_on_commit_callbacks)
    # Metadata tasks get a grace period after upload before a missing thumbnail counts as lost.
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["metadata"] == []
    IndexJob.objects.exclude(pk=refused.pk).delete()  # the job that first sweep started
    from django.utils import timezone

    album_with_images.images.update(created_at=timezone.now() - recovery.METADATA_GRACE * 2)
    sent_jobs["jobs"].clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = recovery.resume_pending_work()
    assert result["albums"] == [album_with_images.pk]
    new = IndexJob.objects.exclude(pk=refused.pk).get(album=album_with_images)
    assert new.status == "queued" and sent_jobs["jobs"] == [new.pk]
    # The uploads' metadata tasks were never sent (captured, not run): all five images go again.
    assert sorted(sum(sent_jobs["metadata"], [])) == sorted(album_with_images.images.values_list("pk", flat=True))
    assert sorted(result["metadata"]) == sorted(album_with_images.images.values_list("pk", flat=True))

    # A second sweep finds the job running and starts nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["albums"] == []


def test_the_sweep_leaves_albums_whose_last_job_failed_for_another_reason_or_was_cancelled(
    album_with_images, alice, django_capture_on_commit_callbacks, sent_jobs
):
    from workers import recovery

    other = services.album_create(owner=alice, name="cancelled", encoder_spec=OPEN_CLIP_TINY)
    with django_capture_on_commit_callbacks(execute=False):
        services.image_upload_many(album=other, user=alice, files=[("x.png", io.BytesIO(image_bytes("PNG")))])
    IndexJob.objects.create(album=album_with_images, kind=IndexJob.Kind.INDEX, status="failed",
                            message="Weights missing: put them at /models/x.safetensors")
    IndexJob.objects.create(album=other, kind=IndexJob.Kind.INDEX, status="cancelled", message="Cancelled.")
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["albums"] == []
    assert sent_jobs["jobs"] == []


def test_one_sweep_however_many_workers_reconnect_at_once(settings):
    import redis

    from workers import recovery

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(recovery.SWEEP_LOCK_KEY)

    class App:
        sent = []

        def send_task(self, name, args):
            self.sent.append((name, args))

    class Refusing:
        def send_task(self, name, args):
            raise OperationalError("Connection closed by server.")

    try:
        with pytest.raises(OperationalError):
            recovery.request_sweep(client, Refusing(), "query@a")
        assert client.get(recovery.SWEEP_LOCK_KEY) is None  # a sweep never sent holds no lock
        app = App()
        assert recovery.request_sweep(client, app, "encode@a") is True
        assert recovery.request_sweep(client, app, "default@a") is False
        [(name, [token])] = app.sent
        assert name == "workers.tasks.resume_pending_work" and token.startswith("encode@a/")
        assert 0 < client.ttl(recovery.SWEEP_LOCK_KEY) <= recovery.SWEEP_LOCK_SECONDS
        recovery.release_sweep_lock("someone-else")  # only the sweep that holds the lock releases it
        assert client.get(recovery.SWEEP_LOCK_KEY).decode() == token
        recovery.release_sweep_lock(token)  # what the sweep task does when it ends
        assert recovery.request_sweep(client, app, "default@a") is True
    finally:
        client.delete(recovery.SWEEP_LOCK_KEY)
        client.close()


def test_the_sweep_restarts_a_refused_rebuild_and_replaces_a_stale_job(
    album_with_images, alice, monkeypatch, django_capture_on_commit_callbacks, sent_jobs, settings
):
    """A rebuild refused by the broker leaves every image `indexed` under the old model: nothing
    waits, yet the new encoder's vectors were never made. A job whose messages Redis lost stays
    active with no sign of life."""
    from django.utils import timezone

    from albums.models import Album
    from workers import recovery

    album_with_images.images.update(status="indexed")
    Album.objects.filter(pk=album_with_images.pk).update(active_model_id="open-clip:old@sha256:000000000000")
    IndexJob.objects.create(album=album_with_images, kind=IndexJob.Kind.REBUILD, status="failed",
                            message="Could not queue the job (broker unavailable: refused)")
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["albums"] == [album_with_images.pk]
    rebuild = IndexJob.objects.filter(album=album_with_images).latest("pk")
    assert rebuild.kind == "rebuild" and rebuild.status == "queued" and sent_jobs["jobs"] == [rebuild.pk]

    # That job's message is lost (Redis crashed before writing it): once stale, the next sweep replaces it.
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["albums"] == []  # alive: left alone
    old = timezone.now() - timezone.timedelta(seconds=settings.LOUPE_JOB_STALE_SECONDS + 60)
    IndexJob.objects.filter(pk=rebuild.pk).update(created_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.resume_pending_work()["albums"] == [album_with_images.pk]
    rebuild.refresh_from_db()
    replacement = IndexJob.objects.filter(album=album_with_images).latest("pk")
    assert rebuild.status == "failed" and "Stalled" in rebuild.message
    assert replacement.kind == "rebuild" and replacement.status == "queued"
