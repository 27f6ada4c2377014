"""The labeling job through a real Celery worker consuming the real broker: started through the API,
run on the `encode` queue, its labels read back through the API."""


import pytest

from albums.models import Image
from search.rag.models import Label
from tests.conftest import wait_for
from tests.rag.conftest import augmented, cat_and_cup_set, jpeg, photo, upload


@pytest.fixture
def set_and_album_on_worker(worker, rag_album, alice, client_for):
    api = client_for(alice)
    set_id = cat_and_cup_set(api, rag_album.pk, name="label set")
    ids = upload(api, rag_album.pk, {"cat-2.jpg": augmented("chelsea"), "cup-2.jpg": augmented("coffee"),
                                     "lost.jpg": jpeg(photo("astronaut"))})
    lost = Image.objects.get(pk=ids["lost.jpg"])
    lost.file.storage.delete(lost.file.name)  # storage lost it after upload: one bad image in scope
    return set_id, ids


def test_the_worker_labels_the_album_and_records_the_bad_image(set_and_album_on_worker, alice, client_for):
    set_id, ids = set_and_album_on_worker
    api = client_for(alice)
    started = api.post(f"/api/v1/support-sets/{set_id}/label-jobs/", {"scope": "album"}, format="json")
    assert started.status_code == 202, started.content
    job_id = started.json()["id"]
    job = wait_for(lambda: (lambda j: j if j["status"] not in ("queued", "running") else None)(
        api.get(f"/api/v1/jobs/{job_id}/").json()), timeout=180, what="the labeling job")
    assert job["status"] == "succeeded", job
    assert job["done"] == 5 and job["failed"] == 1 and job["result"]["failures"][0]["image_id"] == ids["lost.jpg"]
    page = api.get(f"/api/v1/support-sets/{set_id}/labels/").json()
    assert page["count"] == 4
    by_image = {item["image"]: item for item in page["results"]}
    assert by_image[ids["cat-2.jpg"]]["class_label"] == "cat" and by_image[ids["cup-2.jpg"]]["class_label"] == "cup"
    assert all(item["source"] == "retrieval" and 0 <= item["margin"] <= 1 for item in page["results"])
    assert not Label.objects.filter(image_id=ids["lost.jpg"]).exists()
