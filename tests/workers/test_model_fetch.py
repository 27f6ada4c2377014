"""The default text encoder arrives by itself where a hub answers (workers/fetching.py): a tiny real
OpenCLIP checkpoint served by a hub on loopback (tests/hub.py) through huggingface_hub's own download,
with byte progress, its sha256 checked and a cut connection resumed; an unreachable hub fails the
job at once and albums fall back; `false` never starts one."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from albums import services as album_services
from albums.forms import AlbumCreateForm
from albums.models import Album, Image
from encoders.registry import EncoderSpec
from encoders.fetch import HubFile, partial_path
from encoders.weights import expected_location, find_weights
from tests.conftest import BASE_DIR, wait_for, worker_env
from tests.tiny_models import make_images
from workers.fetching import model_fetch_run, model_fetch_start
from workers.models import IndexJob
from workers.recovery import resume_pending_work

EFFICIENTNET = "dense:efficientnet-lite0"
CHECKPOINT = "open_clip_model.safetensors"


def _place_architecture(models_dir: Path, tiny_models_dir: Path, name: str, repo: str) -> str:
    """An architecture an operator defined (its open_clip_config.json naming the hub repository that
    holds its checkpoint), with the checkpoint itself still missing. Returns the spec."""
    config = json.loads((tiny_models_dir / "open-clip" / "tiny-vit" / "random" / "open_clip_config.json").read_text())
    directory = models_dir / "open-clip" / name / "random"
    directory.mkdir(parents=True)
    (directory / "open_clip_config.json").write_text(json.dumps({**config, "hf_hub": repo}))
    return f"open-clip:{name}/random"


@pytest.fixture
def hub_model(tiny_models_dir, local_hub):
    """(repo, checkpoint bytes) of a tiny OpenCLIP served by the loopback hub."""
    repo = f"tests/tiny-open-clip-{uuid.uuid4().hex[:8]}"
    data = (tiny_models_dir / "open-clip" / "tiny-vit" / "random" / CHECKPOINT).read_bytes()
    local_hub.add(repo, CHECKPOINT, data)
    return repo, data


@pytest.fixture
def fetchable(settings, tmp_path, tiny_models_dir, hub_model, local_hub, monkeypatch):
    """A fresh models dir whose default text encoder is on the loopback hub and not yet here."""
    settings.LOUPE_MODELS_DIR = tmp_path / "models"
    spec = _place_architecture(settings.LOUPE_MODELS_DIR, tiny_models_dir, "tiny-hub", hub_model[0])
    settings.LOUPE_DEFAULT_ENCODERS = [spec, EFFICIENTNET]
    settings.LOUPE_ALLOW_DOWNLOADS = "auto"
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    return spec


def test_a_fetch_downloads_with_byte_progress_resumes_a_cut_connection_and_checks_sha256(db, fetchable, hub_model,
                                                                                        local_hub):
    repo, _ = hub_model
    # Larger than the client's 10 MiB read chunk, so the cut falls after bytes it has written.
    data = np.random.default_rng(0).integers(0, 256, 24 << 20, dtype=np.uint8).tobytes()
    local_hub.add(repo, CHECKPOINT, data)
    local_hub.cut_once.add((repo, CHECKPOINT))
    job, created = model_fetch_start(spec=fetchable)
    again, created_again = model_fetch_start(spec=fetchable)
    assert created and not created_again and again.pk == job.pk  # one download per model

    assert model_fetch_run(job_id=job.pk)["bytes"] == len(data)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.done == job.total == len(data), job.message
    found = find_weights(EncoderSpec.parse(fetchable))
    assert found is not None and found.path.read_bytes() == data
    # huggingface_hub picked up where the cut connection left it instead of starting over.
    ranges = local_hub.gets(repo, CHECKPOINT)
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] == f"bytes={10 << 20}-", ranges


def test_a_download_restarted_after_its_worker_died_continues_the_partial_file(db, fetchable, hub_model, local_hub,
                                                                               settings):
    repo, data = hub_model
    spec = EncoderSpec.parse(fetchable)
    target = HubFile(repo, CHECKPOINT, len(data), hashlib.sha256(data).hexdigest())
    partial = partial_path(expected_location(spec).directory, target)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:1000])  # what the killed worker had written
    job, _ = model_fetch_start(spec=fetchable)
    model_fetch_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.message
    assert local_hub.gets(repo, CHECKPOINT) == ["bytes=1000-"]
    assert find_weights(spec).path.read_bytes() == data and not partial.exists()


def test_a_file_that_does_not_match_the_published_sha256_is_deleted(db, fetchable, hub_model, local_hub):
    repo, _ = hub_model
    local_hub.published_sha[(repo, CHECKPOINT)] = "0" * 64
    job, _ = model_fetch_start(spec=fetchable)
    model_fetch_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "does not match the sha256" in job.message and "deleted" in job.message
    assert find_weights(EncoderSpec.parse(fetchable)) is None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_hub_fails_the_fetch_at_once_and_new_albums_fall_back(db, fetchable, alice, monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    # The first album starts the download and takes the text encoder it brings.
    first = album_services.album_create(owner=alice, name="first")
    assert first.encoder_spec == fetchable
    job = IndexJob.objects.get(kind="fetch")
    assert job.album_id is None and job.model_id == fetchable and job.status == "queued"

    model_fetch_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.message.startswith(f"No model hub answered at {endpoint} within 3 s")
    assert "LOUPE_ALLOW_DOWNLOADS=false" in job.message and str(EncoderSpec.parse(fetchable).model) in job.message

    # Offline now known: the next album searches with what is here, says why, and nobody tries again.
    second = album_services.album_create(owner=alice, name="second")
    assert second.encoder_spec == EFFICIENTNET
    assert IndexJob.objects.filter(kind="fetch").count() == 1
    form = AlbumCreateForm()
    assert form.fields["encoder_spec"].initial == EFFICIENTNET
    assert form.fields["encoder_spec"].help_text.startswith(f"The default text encoder {fetchable} could not be downloaded")


def test_with_no_hub_the_fetch_ends_without_loading_torch_into_its_worker(transactional_db, no_worker_consuming, fetchable,
                                                                         settings, tmp_path):
    """The default worker runs the fetch at every offline start and keeps whatever it imported: with
    no hub it must fail before any library's cache lookup imports torch (hundreds of MB for good).
    The job is committed here; no worker may take it before the process below does."""
    job, _ = model_fetch_start(spec=fetchable)
    env = worker_env(media_root=tmp_path, models_dir=settings.LOUPE_MODELS_DIR,
                     HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", LOUPE_ALLOW_DOWNLOADS="auto",
                     LOUPE_DEFAULT_ENCODERS=f"{fetchable},{EFFICIENTNET}")
    script = ("import json, sys, django; django.setup(); from workers.fetching import model_fetch_run; "
              f"result = model_fetch_run(job_id={job.pk}); "
              "print(json.dumps({'result': result, 'torch': 'torch' in sys.modules}))")
    completed = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                               timeout=120, check=True)
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answer == {"result": {"failed": "model_hub_unreachable"}, "torch": False}, completed.stderr[-2000:]
    job.refresh_from_db()
    assert job.status == "failed" and job.message.startswith("No model hub answered at http://127.0.0.1:")


def test_a_hub_that_takes_the_connection_but_never_answers_fails_the_fetch_too(db, fetchable, monkeypatch):
    """A firewall that drops packets looks like this: the probe's timeout ends it, not a hung download."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        job, _ = model_fetch_start(spec=fetchable)
        model_fetch_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed", job.message
    assert job.message.startswith(f"No model hub answered at {endpoint} within 3 s"), job.message


def test_the_recovery_sweep_replaces_a_download_whose_worker_died(db, fetchable):
    job, _ = model_fetch_start(spec=fetchable)
    IndexJob.objects.filter(pk=job.pk).update(status="running", created_at=timezone.now() - timedelta(hours=1),
                                              heartbeat_at=timezone.now() - timedelta(hours=1))
    started = resume_pending_work()["model_fetches"]
    job.refresh_from_db()
    assert job.status == "failed" and job.message.startswith("Stalled")
    assert IndexJob.objects.get(pk=started[0]).model_id == fetchable and len(started) == 1
    assert resume_pending_work()["model_fetches"] == []  # the new one is alive


def test_downloads_false_never_starts_a_fetch(db, fetchable, alice, settings):
    settings.LOUPE_ALLOW_DOWNLOADS = False
    assert album_services.album_create(owner=alice, name="offline").encoder_spec == EFFICIENTNET
    call_command("fetch_default_encoder", stdout=io.StringIO())
    assert not IndexJob.objects.filter(kind="fetch").exists()


def test_only_staff_see_a_fetch_on_the_jobs_page_and_nobody_gets_it_from_the_jobs_api(db, fetchable, make_user,
                                                                                    client_for, client):
    call_command("fetch_default_encoder", stdout=io.StringIO())
    job = IndexJob.objects.get(kind="fetch")
    staff, member = make_user(is_staff=True), make_user()
    album_services.album_create(owner=member, name="mine")
    for user, shown in ((staff, True), (member, False)):
        client.force_login(user)
        page = client.get("/jobs/").content.decode()
        assert (f'data-job="{job.pk}"' in page) is shown
        assert client_for(user).get(f"/api/v1/jobs/{job.pk}/").status_code == 404


def test_an_album_made_while_the_model_downloads_gets_it_and_searches_by_words(worker, settings, tiny_models_dir,
                                                                              hub_model, local_hub, alice, client,
                                                                              client_for):
    """The issue's "done when": the first album searches by text after one automatic download."""
    name = f"tiny-hub-{uuid.uuid4().hex[:8]}"  # the worker shares the models dir and caches encoders by name
    spec = _place_architecture(tiny_models_dir, tiny_models_dir, name, hub_model[0])
    settings.LOUPE_DEFAULT_ENCODERS = [spec, EFFICIENTNET]
    settings.LOUPE_ALLOW_DOWNLOADS = "auto"
    local_hub.gate.clear()  # the download holds until the album is made and its photos wait
    try:
        api = client_for(alice)
        created = api.post("/api/v1/albums/", {"name": "first album"}, format="json")
        assert created.status_code == 201 and created.json()["encoder_spec"] == spec, created.content
        album = Album.objects.get(pk=created.json()["id"])
        fetch = IndexJob.objects.get(kind="fetch", model_id=spec)
        wait_for(lambda: IndexJob.objects.filter(pk=fetch.pk, status="running", total__gt=0).exists(),
                 what="the download to start (the hub told its size)")

        client.force_login(alice)
        page = client.get(f"/albums/{album.pk}/").content.decode()
        assert "Text search will be ready when the model has downloaded (" in page
        progress = api.get(f"/api/v1/albums/{album.pk}/").json()["index"]["model_fetch"]
        assert progress["status"] == "running" and progress["total"] == len(hub_model[1]), progress
        files = []
        for index, image in enumerate(make_images()[:2]):
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "PNG")
            buffer.seek(0)
            buffer.name = f"photo{index}.png"
            files.append(buffer)
        uploaded = api.post(f"/api/v1/albums/{album.pk}/images/", {"files": files}, format="multipart")
        assert uploaded.status_code == 201, uploaded.content
        # Its index job waits for the weights (alive, not failed) instead of falling back or failing.
        waiting = wait_for(lambda: IndexJob.objects.filter(album=album, kind="index", status="queued",
                                                           message__startswith="Waiting for the weights").first(),
                           what="the index job to wait for the download")
        local_hub.gate.set()
        wait_for(lambda: Image.objects.filter(album=album, status="indexed").count() == 2, timeout=120,
                 what="the worker to index the photos once the weights landed")
        # The job that waited is the one that indexed them.
        wait_for(lambda: IndexJob.objects.filter(pk=waiting.pk, status="succeeded").exists(),
                 what="the waiting index job to finish")

        fetch.refresh_from_db()
        assert fetch.status == "succeeded" and fetch.done == fetch.total == len(hub_model[1]), fetch.message
        album.refresh_from_db()
        assert album.active_model_id.startswith(spec)
        response = api.post(f"/api/v1/albums/{album.pk}/search/", {"text": "a cat", "min_score": -1}, format="json")
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == 2
    finally:
        local_hub.gate.set()
        shutil.rmtree(tiny_models_dir / "open-clip" / name, ignore_errors=True)


def test_a_fetch_that_cannot_even_start_ends_failed_with_its_reason_instead_of_staying_running(db):
    """Left running, it would go stale, and the recovery sweep would replace it, to fail the same way,
    every 15 minutes, while the albums waiting on it kept waiting."""
    job, _ = model_fetch_start(spec="open-clip:")
    model_fetch_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.message and "open-clip:" in job.message
