"""The real path: example images added through the API are embedded by a Celery worker on the
`encode` queue, and classification runs on the `query` queue — the same answer as in-process."""


import pytest

from search.rag.models import PatchEmbedding, SupportImage
from tests.conftest import wait_for
from tests.rag.conftest import augmented, b64, cat_and_cup_set


@pytest.fixture
def set_on_worker(worker, rag_album, alice, client_for):
    api = client_for(alice)
    set_id = cat_and_cup_set(api, rag_album.pk, name="worker set", extra_files=(b"GIF89a broken",))
    return set_id


def test_the_worker_embeds_support_patches_and_classification_runs_on_the_query_queue(set_on_worker, alice, client_for, settings):
    wait_for(
        lambda: SupportImage.objects.filter(support_set_id=set_on_worker, status="ready").count() == 2,
        timeout=120,
        what="support patches from the worker",
    )
    assert PatchEmbedding.objects.filter(support_image__support_set_id=set_on_worker).count() == 2 * 49
    api = client_for(alice)
    query = {"image_base64": b64(augmented("chelsea"))}
    settings.LOUPE_QUERY_ENCODING = "worker"
    on_worker = api.post(f"/api/v1/support-sets/{set_on_worker}/classify/", query, format="json")
    assert on_worker.status_code == 200, on_worker.content
    settings.LOUPE_QUERY_ENCODING = "web"
    here = api.post(f"/api/v1/support-sets/{set_on_worker}/classify/", query, format="json").json()
    remote = on_worker.json()
    assert remote["embedded_now"] == 0 and remote["decision"]["flag"] == "cat"
    assert remote["class_scores"] == pytest.approx(here["class_scores"], abs=1e-5)
    assert [e["support_image_id"] for e in remote["evidence"]] == [e["support_image_id"] for e in here["evidence"]]
