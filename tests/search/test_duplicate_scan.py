"""A near-duplicate scan through the real stack: the API queues it, the session's Celery worker
consumes `default` and runs it, and the job's result is what the request answers for a small album."""

import pytest

from tests.conftest import wait_for
from tests.reliability.test_abuse import _vector_album

pytestmark = pytest.mark.slow


def test_a_worker_scans_an_album_and_the_job_carries_the_groups(worker, alice, client_for, settings):
    album = _vector_album(alice, [[1, 0, 0, 0], [1, 0.01, 0, 0], [0, 1, 0, 0], [0, 1, 0.01, 0], [0, 0, 1, 0]])
    client, url = client_for(alice), f"/api/v1/albums/{album.pk}/duplicates/"
    inline = client.get(f"{url}?threshold=0.99").json()
    settings.LOUPE_DUPLICATES_INLINE_MAX = 2
    assert client.get(f"{url}?threshold=0.99").json()["extra"]["scan"] is True
    started = client.post(url, {"threshold": 0.99}, format="json")
    assert started.status_code == 202, started.content
    job_url = f"/api/v1/jobs/{started.json()['id']}/"
    job = wait_for(lambda: (body := client.get(job_url).json())["status"] not in ("queued", "running") and body,
                   timeout=60, what="the scan to finish")
    assert job["status"] == "succeeded", job
    assert (job["done"], job["total"]) == (5, 5) and job["result"] == inline
    assert inline["total"] == 2 and inline["pairs"] == 2
