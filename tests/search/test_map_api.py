"""The map API's reads and the rebuild's rules, on rows written here (the worker's job has its own
tests: tests/workers/test_maps.py)."""

import datetime
import gzip
import json

import numpy as np
import pytest
from django.utils import timezone

from albums import services
from albums.roles import Role
from encoders.concepts import concept_index
from search.rag import services as rag
from search.rag.models import Label
from tests.reliability.test_abuse import _vector_album
from tests.search.test_search_api import MODEL
from workers import map_layout, maps
from workers.models import AlbumMap, ImageConcepts, IndexJob, MapCluster, MapPoint

pytestmark = pytest.mark.django_db


def _mapped(album, points: dict[int, tuple[float, float, int]]):
    now = timezone.now()
    AlbumMap.objects.create(album=album, model_id=MODEL, fitted_at=now, updated_at=now, fitted_count=len(points))
    for image_id, (x, y, cluster) in points.items():
        MapPoint.objects.create(album=album, image_id=image_id, model_id=MODEL, x=x, y=y, cluster=cluster)
    MapCluster.objects.create(album=album, model_id=MODEL, cluster=0, name="red, blue", terms=["red", "blue"],
                              size=2, medoid_image_ids=list(points)[:1], x=0.5, y=0.25)


def test_an_album_without_a_map_says_none_and_rebuild_starts_one_job(alice, make_user, client_for):
    album = _vector_album(alice, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    client = client_for(alice)
    body = client.get(f"/api/v1/albums/{album.pk}/map/").json()
    assert (body["state"], body["model_id"], body["count"], body["unplaced"], body["job"]) == ("none", MODEL, 0, 3, None)
    assert body["points"] == {"image_id": [], "x": [], "y": [], "cluster": [], "taken": []} and "labels" not in body

    viewer, editor, outsider = make_user("viewer"), make_user("editor"), make_user("outsider")
    services.album_member_add(album=album, username="viewer", role=Role.VIEWER)
    services.album_member_add(album=album, username="editor", role=Role.EDITOR)
    url = f"/api/v1/albums/{album.pk}/map/rebuild/"
    assert client_for(viewer).post(url).status_code == 403
    assert client_for(outsider).post(url).json()["code"] == "album_not_found"
    first = client_for(editor).post(url)
    second = client_for(alice).post(url)
    assert first.status_code == second.status_code == 202
    assert first.json()["job"]["id"] == second.json()["job"]["id"]
    job = IndexJob.objects.get(album=album, kind="map")
    assert (job.status, job.model_id, job.params) == ("queued", MODEL, {"refit": True})
    listed = client_for(viewer).get(f"/api/v1/albums/{album.pk}/jobs/").json()["results"]
    assert [(j["id"], j["kind"]) for j in listed] == [(job.pk, "map")]  # on the jobs list like any job
    building = client_for(viewer).get(f"/api/v1/albums/{album.pk}/map/").json()
    assert building["state"] == "building" and building["job"]["id"] == job.pk and building["job"]["kind"] == "map"
    # A map job is not indexing: the album's Index chip must not say "Indexing" while it runs.
    assert client_for(viewer).get(f"/api/v1/albums/{album.pk}/").json()["index"]["active_job"] is None
    assert client_for(outsider).get(f"/api/v1/albums/{album.pk}/map/").status_code == 404


def test_rebuild_of_an_album_with_no_vectors_is_a_409_and_starts_nothing(alice, album, client_for):
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/map/rebuild/")
    assert response.status_code == 409 and response.json()["code"] == "album_not_indexed"
    assert "no vectors" in response.json()["message"]
    assert not IndexJob.objects.filter(album=album, kind="map").exists()


def test_a_ready_map_comes_back_as_columns_with_an_etag(alice, client_for):
    album = _vector_album(alice, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    a, b, c = album.images.order_by("pk").values_list("pk", flat=True)
    taken = datetime.datetime(2021, 7, 4, 12, 30, tzinfo=datetime.UTC)
    album.images.filter(pk=a).update(taken_at=taken)
    _mapped(album, {a: (0.123456, -1.0, 0), b: (0.5, 0.25, 0)})
    client = client_for(alice)
    response = client.get(f"/api/v1/albums/{album.pk}/map/")
    body = response.json()
    assert (body["state"], body["count"], body["unplaced"]) == ("ready", 2, 1)
    assert body["points"] == {"image_id": [a, b], "x": [0.1235, 0.5], "y": [-1.0, 0.25], "cluster": [0, 0],
                              "taken": [int(taken.timestamp()), None]}
    assert body["clusters"] == [{"id": 0, "name": "red, blue", "terms": ["red", "blue"], "size": 2, "x": 0.5,
                                 "y": 0.25, "medoid_image_ids": [a]}]
    assert response["Cache-Control"] == "private, no-cache" and response["Last-Modified"]
    again = client.get(f"/api/v1/albums/{album.pk}/map/", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and not again.content
    MapPoint.objects.create(album=album, image_id=c, model_id=MODEL, x=0, y=0, cluster=-1, placed=True)
    changed = client.get(f"/api/v1/albums/{album.pk}/map/", HTTP_IF_NONE_MATCH=response["ETag"])
    assert changed.status_code == 200 and changed.json()["count"] == 3 and changed.json()["unplaced"] == 0


def test_the_map_comes_compressed_to_a_client_that_asks_and_its_weak_etag_still_answers_304(alice, client_for):
    vectors = [[1.0, 0.0, float(k % 7), 0.5] for k in range(40)]
    album = _vector_album(alice, vectors)
    ids = list(album.images.order_by("pk").values_list("pk", flat=True))
    _mapped(album, {image_id: (k / 40, -k / 40, k % 3) for k, image_id in enumerate(ids)})
    client = client_for(alice)
    plain = client.get(f"/api/v1/albums/{album.pk}/map/")
    packed = client.get(f"/api/v1/albums/{album.pk}/map/", HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in plain and packed["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed.content)) == plain.json()
    assert len(packed.content) < len(plain.content)
    again = client.get(f"/api/v1/albums/{album.pk}/map/", HTTP_ACCEPT_ENCODING="gzip",
                       HTTP_IF_NONE_MATCH=packed["ETag"])
    assert packed["ETag"].startswith("W/") and again.status_code == 304


def test_a_support_sets_labels_come_per_point_and_another_albums_set_is_404(alice, bob, client_for):
    album = _vector_album(alice, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    a, b, c = album.images.order_by("pk").values_list("pk", flat=True)
    _mapped(album, {a: (0, 0, 0), b: (0.1, 0, 0), c: (0.2, 0, -1)})
    support = rag.support_set_create(album=album, user=alice, name="kinds", encoder_spec="open-clip:ViT-B-32/openai")
    bag, coat = (rag.support_class_create(support_set=support, label=name) for name in ("bag", "coat"))
    for image_id, klass, state in ((a, coat, "accepted"), (b, bag, "rejected")):
        Label.objects.create(image_id=image_id, support_set=support, support_class=klass, label=klass.label,
                             predicted_label=klass.label, scores={klass.label: 1.0}, margin=1.0, state=state)
    body = client_for(alice).get(f"/api/v1/albums/{album.pk}/map/?support_set={support.pk}").json()
    assert body["labels"] == {"support_set": support.pk, "names": ["bag", "coat"], "index": [1, -1, -1],
                              "state": ["accepted", "rejected", None]}

    other = _vector_album(bob, [[1, 0, 0, 0]])
    foreign = rag.support_set_create(album=other, user=bob, name="bob's", encoder_spec="open-clip:ViT-B-32/openai")
    for set_id in (foreign.pk, foreign.pk + 1000):
        response = client_for(alice).get(f"/api/v1/albums/{album.pk}/map/?support_set={set_id}")
        assert response.status_code == 404 and response.json()["code"] == "support_set_not_found"
    bad = client_for(alice).get(f"/api/v1/albums/{album.pk}/map/?support_set=x")
    assert bad.status_code == 400


def test_clusters_of_an_encoder_with_imagenet_concepts_are_named_by_their_mean_probabilities(alice):
    album = _vector_album(alice, [[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1, 0, 0]])
    a, b, c = album.images.order_by("pk").values_list("pk", flat=True)
    for image_id, top in ((a, 207), (b, 208), (c, 954)):
        probabilities = np.full(1000, 0.0001, dtype=np.float32)
        probabilities[top] = 0.9
        ImageConcepts.objects.create(image_id=image_id, album=album, model_id=MODEL, probabilities=probabilities)
    ids, clusters = np.array([a, b, c]), np.array([0, 0, 1])
    means = maps._concept_means(album_id=album.pk, model_id=MODEL, ids=ids, clusters=clusters, labels=[0, 1])
    assert means.shape == (2, 1000) and np.isclose(means[0, 207], 0.45, atol=1e-3) and np.isclose(means[1, 954], 0.9,
                                                                                                   atol=1e-3)
    names = concept_index().class_names
    terms = map_layout.concept_terms(means, top=2)
    assert set(terms[0]) == {names[207].split(",")[0], names[208].split(",")[0]}
    assert maps._concept_means(album_id=album.pk, model_id="other", ids=ids, clusters=clusters, labels=[0, 1]) is None
