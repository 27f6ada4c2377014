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
