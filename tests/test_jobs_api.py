import pytest

from workers.models import IndexJob

pytestmark = pytest.mark.django_db


def test_job_detail_and_album_job_list(alice, album, client_for):
    job = IndexJob.objects.create(album=album, kind="index", status="running", total=10, done=4, failed=1, message="batch 2")
    client = client_for(alice)
    body = client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (body["status"], body["done"], body["failed"], body["total"], body["progress"]) == ("running", 4, 1, 10, 0.4)
    listing = client.get(f"/api/v1/albums/{album.pk}/jobs/").json()
    assert [j["id"] for j in listing["results"]] == [job.pk]


def test_a_job_without_a_heartbeat_for_too_long_is_stale(alice, album, client_for, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.LOUPE_JOB_STALE_SECONDS = 60
    old = timezone.now() - timedelta(seconds=120)
    job = IndexJob.objects.create(album=album, kind="index", status="running", total=5, heartbeat_at=old)
    done = IndexJob.objects.create(album=album, kind="index", status="succeeded", total=5, done=5, heartbeat_at=old)
    client = client_for(alice)
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["stale"] is True
    assert client.get(f"/api/v1/jobs/{done.pk}/").json()["stale"] is False
    IndexJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["stale"] is False


# --- A failed rebuild shows on its album until dismissed ------------------------------------------------


def _failed_rebuild(album, *, spec="open-clip:ViT-L-14/openai", message="Weights for open-clip:ViT-L-14 are missing."):
    """An encoder change whose rebuild fails, the way the worker records it (workers.indexing)."""
    from albums.models import Album
    from workers import indexing

    Album.objects.filter(pk=album.pk).update(encoder_spec=spec)
    album.refresh_from_db()
    job = indexing.album_encoder_changed(album=album)
    indexing.index_job_fail(job_id=job.pk, message=message)
    job.refresh_from_db()
    return job


def test_a_failed_rebuild_shows_on_the_album_until_an_editor_dismisses_it(alice, bob, album, member_of, client_for):
    from albums.roles import Role

    job = _failed_rebuild(album)
    assert job.params == {"encoder_spec": "open-clip:ViT-L-14/openai"}
    member_of(bob, Role.EDITOR)
    client = client_for(bob)
    shown = client.get(f"/api/v1/albums/{album.pk}/").json()["index"]["last_failed_rebuild"]
    assert shown == {"job_id": job.pk, "encoder_spec": "open-clip:ViT-L-14/openai",
                     "message": "Weights for open-clip:ViT-L-14 are missing.",
                     "finished_at": job.finished_at.isoformat().replace("+00:00", "Z")}
    response = client.post(f"/api/v1/albums/{album.pk}/rebuild-failure/dismiss/")
    assert response.status_code == 200 and response.json() == {"dismissed_job_id": job.pk}
    assert client.get(f"/api/v1/albums/{album.pk}/").json()["index"]["last_failed_rebuild"] is None
    job.refresh_from_db()
    assert job.dismissed_at is not None and job.status == "failed"  # the jobs page still lists it, with why
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["dismissed_at"]
    again = client.post(f"/api/v1/albums/{album.pk}/rebuild-failure/dismiss/")
    assert again.status_code == 200 and again.json() == {"dismissed_job_id": None}


def test_the_album_page_gets_the_failed_rebuild(alice, album):
    from django.test import Client

    job = _failed_rebuild(album)
    client = Client()
    client.force_login(alice)
    context = client.get(f"/albums/{album.pk}/").context
    assert context["failed_rebuild"]["job_id"] == job.pk
    assert context["failed_rebuild"] == context["summary"].last_failed_rebuild
    client.post(f"/api/v1/albums/{album.pk}/rebuild-failure/dismiss/")
    assert client.get(f"/albums/{album.pk}/").context["failed_rebuild"] is None


def test_only_the_latest_rebuild_counts_and_only_when_it_failed(alice, album, client_for):
    from workers import indexing

    client = client_for(alice)
    summary = lambda: client.get(f"/api/v1/albums/{album.pk}/").json()["index"]  # noqa: E731
    assert summary()["last_failed_rebuild"] is None
    IndexJob.objects.create(album=album, kind="index", status="failed", message="an index job, not a rebuild")
    assert summary()["last_failed_rebuild"] is None
    first = _failed_rebuild(album)
    assert summary()["last_failed_rebuild"]["job_id"] == first.pk
    # Changing the encoder again starts a new rebuild: while it runs, and once it succeeds, no failure shows.
    newer = indexing.album_encoder_changed(album=album)
    assert summary()["last_failed_rebuild"] is None and summary()["rebuilding"] is True
    IndexJob.objects.filter(pk=newer.pk).update(status="succeeded")
    assert summary()["last_failed_rebuild"] is None
    second = _failed_rebuild(album, spec="siglip:base", message="no weights")
    assert summary()["last_failed_rebuild"]["encoder_spec"] == "siglip:base"
    assert summary()["last_failed_rebuild"]["job_id"] == second.pk


def test_a_rebuild_row_from_before_it_recorded_its_encoder_names_the_albums(alice, album, client_for):
    IndexJob.objects.create(album=album, kind="rebuild", status="failed", message="old failure")
    shown = client_for(alice).get(f"/api/v1/albums/{album.pk}/").json()["index"]["last_failed_rebuild"]
    assert shown["encoder_spec"] == album.encoder_spec and shown["finished_at"] is None


def test_dismissing_needs_an_editor_and_a_foreign_album_is_the_same_404(alice, bob, album, member_of, client_for):
    from albums.roles import Role

    job = _failed_rebuild(album)
    client = client_for(bob)
    foreign = client.post(f"/api/v1/albums/{album.pk}/rebuild-failure/dismiss/")
    missing = client.post(f"/api/v1/albums/{album.pk + 999}/rebuild-failure/dismiss/")
    assert foreign.status_code == 404 and foreign.json() == missing.json()
    member_of(bob, Role.VIEWER)
    refused = client.post(f"/api/v1/albums/{album.pk}/rebuild-failure/dismiss/")
    assert refused.status_code == 403 and refused.json()["code"] == "role_required"
    job.refresh_from_db()
    assert job.dismissed_at is None
