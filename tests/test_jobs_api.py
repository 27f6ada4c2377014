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
