"""A search that read the album's model just before a rebuild switched it (and deleted the old
vectors in the same commit) must answer from the new model, never with nothing.

The switch is held open exactly between the two reads: the album row (read by the view) and the
candidate statement, by running `index_job_finish` from another connection at that point."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from albums import services as album_services
from albums.models import Album, Image
from search import services
from search.scoring import Weights
from workers.vector_store import embeddings_insert
from workers.indexing import index_job_finish
from workers.models import IndexJob

OLD = "dense:tests-old@sha256:0000000000000064"
NEW = "dense:tests-new@sha256:0000000000000064"


@pytest.fixture
def rebuilt_album(alice, transactional_db):
    album = album_services.album_create(owner=alice, name="switching")
    images = Image.objects.bulk_create(
        Image(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{i:064d}", bytes=1, mime="image/png",
              status="indexed")
        for i in range(20)
    )
    ids = [image.pk for image in images]
    rng = np.random.default_rng(0)
    for model_id in (OLD, NEW):
        vectors = rng.standard_normal((len(ids), 64)).astype(np.float32)
        embeddings_insert(model_id=model_id, image_ids=ids, vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    Album.objects.filter(pk=album.pk).update(active_model_id=OLD)
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.REBUILD, status=IndexJob.Status.RUNNING,
                                  generation=Album.objects.get(pk=album.pk).generation, model_id=NEW,
                                  total=len(ids), done=len(ids))
    return Album.objects.get(pk=album.pk), ids, job


def _switch_between_reads(monkeypatch, job):
    """Let the first candidate statement run only after the rebuild switch has committed."""
    real = services.search_candidates
    calls = []

    def candidates_after_switch(**kwargs):
        if not calls:
            switcher = threading.Thread(target=index_job_finish, kwargs={"job_id": job.pk})
            switcher.start()
            switcher.join()
        calls.append(str(kwargs["model"]))
        return real(**kwargs)

    monkeypatch.setattr(services, "search_candidates", candidates_after_switch)
    return calls


def test_search_caught_by_the_switch_answers_from_the_new_model(rebuilt_album, alice, monkeypatch):
    album, ids, job = rebuilt_album
    calls = _switch_between_reads(monkeypatch, job)

    result = services.album_search(
        user=alice, album=album,
        query=services.SearchQuery(image_id=ids[3], weights=Weights(image=1, text=0, negative=0), min_score=-1,
                                   exclude_query_image=True)
    )

    job.refresh_from_db()
    assert job.status == IndexJob.Status.SUCCEEDED and "Removed 20 vector(s)" in job.message
    assert calls == [OLD, NEW]
    assert result.model_id == NEW
    assert result.count == len(ids) - 1  # every other image, the query image excluded
    assert ids[3] not in [hit.image_id for hit in result.hits]


def test_an_album_with_nothing_to_find_is_asked_once(rebuilt_album, alice, monkeypatch):
    """An empty answer without a switch (the query image is the only vector) is not retried."""
    album, ids, job = rebuilt_album
    from workers.models import Embedding

    Embedding.objects.filter(model_id=OLD).exclude(image_id=ids[0]).delete()
    calls = []
    real = services.search_candidates
    monkeypatch.setattr(services, "search_candidates", lambda **kw: calls.append(str(kw["model"])) or real(**kw))

    result = services.album_search(
        user=alice, album=album,
        query=services.SearchQuery(image_id=ids[0], weights=Weights(image=1, text=0, negative=0), min_score=-1,
                                   exclude_query_image=True)
    )

    assert calls == [OLD] and result.count == 0 and result.model_id == OLD
