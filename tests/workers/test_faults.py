"""A worker killed with SIGKILL mid-job: after a restart the job completes with exactly one vector per
good image — no duplicates, no gaps — because chunks are acks_late and their writes idempotent.
1,000 uploads, as the indexing issue's "done when" asks."""

import io
import os
import signal

import pytest

from albums import services
from workers.models import Embedding
from tests.conftest import start_worker, stop_worker, wait_for, worker_env
from tests.images import noise_png
from tests.tiny_models import OPEN_CLIP_TINY
from workers.models import IndexJob, IndexJobBatch

pytestmark = pytest.mark.slow
COUNT = 1000


@pytest.fixture
def session_worker_paused(worker):
    """Stop the session worker consuming, so only this test's worker sees the queues."""
    from config.celery import app

    full_name = wait_for(
        lambda: next((n for n in (app.control.inspect(timeout=2).ping() or {}) if n.startswith(worker["name"] + "@")), None),
        what="the session worker to answer a ping",
    )
    for queue in ("default", "encode", "query"):
        app.control.cancel_consumer(queue, destination=[full_name], reply=True, timeout=5)
    yield worker
    for queue in ("default", "encode", "query"):
        app.control.add_consumer(queue, destination=[full_name], reply=True, timeout=5)


def test_sigkill_mid_job_then_restart_finishes_with_one_vector_per_image(session_worker_paused, alice, tmp_path):
    worker = session_worker_paused
    env = worker_env(media_root=worker["media_root"], models_dir=worker["models_dir"],
                     LOUPE_INDEX_CHUNK="16", LOUPE_ENCODE_BATCH_SIZE="16",
                     # Short, so the victim's chunks come back soon after the kill; longer than any chunk
                     # runs on a loaded CI box (the first ones load the model: 3.5 s here), or the rescuer's
                     # own running chunks are handed out again and counted lost until the job fails.
                     CELERY_VISIBILITY_TIMEOUT="20",
                     # The rescuer looks for them every second, not every 10 s: they come back as soon as
                     # the timeout above allows, not up to 10 s later.
                     CELERY_UNACKED_RESTORE_INTERVAL="1")
    victim = start_worker(env, tmp_path / "victim.log", name="victim")

    album = services.album_create(owner=alice, name="faults", encoder_spec=OPEN_CLIP_TINY)
    files = [(f"{i}.png", io.BytesIO(noise_png(size=(24, 24), seed=100 + i))) for i in range(COUNT)]
    ids = [r.image_id for r in services.image_upload_many(album=album, user=alice, files=files)]
    job = wait_for(lambda: IndexJob.objects.filter(album=album, status="running").first(), what="the job to start")
    wait_for(lambda: IndexJobBatch.objects.filter(job=job).count() >= 3, what="a few chunks to be written")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    job.refresh_from_db()
    assert job.status == "running" and job.done < job.total, "the kill must land before the job ends"

    rescuer = start_worker(env, tmp_path / "rescuer.log", name="rescuer")
    try:
        wait_for(lambda: IndexJob.objects.get(pk=job.pk).status in ("succeeded", "failed"), timeout=240,
                 what="the job to finish")
    finally:
        stop_worker(rescuer)
    job.refresh_from_db()
    assert job.status == "succeeded", job.message
    assert (job.done, job.failed, job.total) == (COUNT, 0, COUNT)
    rows = list(Embedding.objects.filter(album=album).values_list("image_id", "model_id"))
    assert sorted(image_id for image_id, _ in rows) == sorted(ids)  # no gaps, no duplicates
    assert {model_id for _, model_id in rows} == {job.model_id}
    assert sorted(IndexJobBatch.objects.filter(job=job).values_list("seq", flat=True)) == list(range(-(-COUNT // 16)))
