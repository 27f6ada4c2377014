"""Exact expected rankings from hand-built vectors inserted directly. The query encoder is replaced
by a double that returns chosen vectors: what is under test is downstream of it."""

import base64
import io

import numpy as np
import pytest

from albums import services as album_services
from albums.models import Album, Image
from search import selectors
from search import services as search_services
from workers.models import Embedding
from search.query_encoding import EncodedQuery
from tests.images import image_bytes

pytestmark = pytest.mark.django_db

MODEL = "open-clip:tiny-vit/random@sha256:0123456789ab"
OTHER_MODEL = "open-clip:tiny-vit/random@sha256:ba9876543210"
VECTORS = {
    "a": [1, 0, 0, 0],
    "b": [0.8, 0.6, 0, 0],
    "c": [0, 1, 0, 0],
    "d": [0, 0, 1, 0],
}


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def indexed(alice):
    album = album_services.album_create(owner=alice, name="vectors")
    Album.objects.filter(pk=album.pk).update(active_model_id=MODEL, encoder_spec="open-clip:tiny-vit/random")
    album.refresh_from_db()
    ids = {}
    for i, (name, vector) in enumerate(VECTORS.items()):
        image = Image.objects.create(album=album, file=f"{name}.png", original_name=f"{name}.png", sha256=f"{i:064d}",
                                     bytes=1, mime="image/png", width=10 + i, height=20, status="indexed")
        Embedding.objects.create(image=image, album=album, model_id=MODEL, dim=4, vector=unit(vector))
        # A vector of another model that must never be compared with this model's queries.
        Embedding.objects.create(image=image, album=album, model_id=OTHER_MODEL, dim=4, vector=unit([0, 0, 0, 1]))
        ids[name] = image.pk
    return album, ids


@pytest.fixture
def query_vectors(monkeypatch):
    """Set what the encoder 'returns' for this test's query parts."""
    calls = []
    state = {"vectors": {}, "logits": None}

    def fake_encode_query(*, model, texts, image_bytes, ensemble):
        calls.append({"model_id": str(model), "texts": texts, "image": image_bytes is not None, "ensemble": ensemble})
        wanted = set(texts) | ({"image"} if image_bytes is not None else set())
        return EncodedQuery(model_id=str(model), vectors={p: unit(state["vectors"][p]) for p in wanted},
                            siglip_logits=state["logits"])

    monkeypatch.setattr(search_services, "encode_query", fake_encode_query)
    state["calls"] = calls
    return state


def search(client, album, **body):
    return client.post(f"/api/v1/albums/{album.pk}/search/", body, format="json")


def names(response, ids):
    by_id = {v: k for k, v in ids.items()}
    return [by_id[r["image_id"]] for r in response.json()["results"]]


def test_text_only_ranks_by_cosine_with_ties_by_id(indexed, alice, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    response = search(client_for(alice), album, text="red sled", min_score=-1)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert names(response, ids) == ["c", "b", "a", "d"]
    assert [r["score"] for r in body["results"]] == [1.0, 0.6, 0.0, 0.0]
    assert body["results"][1]["cosines"] == {"text": 0.6}
    assert body["model_id"] == MODEL and body["rebuilding"] is False
    assert body["results"][0]["thumbnail_url"] == f"/api/v1/images/{ids['c']}/thumbnail"
    assert set(body["timings_ms"]) == {"encode", "search", "total"}


def test_image_id_query_uses_the_stored_vector_and_finds_itself_first_unless_excluded(indexed, alice, client_for,
                                                                                       query_vectors):
    album, ids = indexed
    response = search(client_for(alice), album, image_id=ids["a"], min_score=-1)
    assert names(response, ids) == ["a", "b", "c", "d"] and response.json()["results"][0]["score"] == 1.0
    response = search(client_for(alice), album, image_id=ids["a"], min_score=-1, exclude_query_image=True)
    assert names(response, ids) == ["b", "c", "d"]
    assert response.json()["results"][0]["score"] == 0.8
    assert query_vectors["calls"] == []  # nothing to encode


def test_the_same_image_as_bytes_ranks_as_its_image_id_does(indexed, alice, client_for, query_vectors):
    """Uploaded bytes of an album image: the image itself first, as for its image_id; with
    exclude_query_image the album's images of the same content are left out."""
    import hashlib

    album, ids = indexed
    data = image_bytes()
    Image.objects.filter(pk=ids["a"]).update(sha256=hashlib.sha256(data).hexdigest())
    query_vectors["vectors"] = {"image": VECTORS["a"]}
    client = client_for(alice)
    by_bytes = search(client, album, image_base64=base64.b64encode(data).decode(), min_score=-1)
    by_id = search(client, album, image_id=ids["a"], min_score=-1)
    assert names(by_bytes, ids) == names(by_id, ids) == ["a", "b", "c", "d"]
    excluded = search(client, album, image_base64=base64.b64encode(data).decode(), min_score=-1, exclude_query_image=True)
    assert names(excluded, ids) == ["b", "c", "d"]


def test_image_plus_text_minus_negative(indexed, alice, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"image": [1, 0, 0, 0], "text": [0, 1, 0, 0], "negative": [0.6, 0.8, 0, 0]}
    data = base64.b64encode(image_bytes()).decode()
    response = search(client_for(alice), album, image_base64=data, text="x", negative_text="y",
                      image_weight=1, text_weight=1, negative_weight=1, min_score=-5)
    body = response.json()
    scores = {r["image_id"]: r["score"] for r in body["results"]}
    # a: (1+0)/2 - .6 = -.1 ; b: (.8+.6)/2 - .96 = -.26 ; c: (0+1)/2 - .8 = -.3 ; d: 0 - 0 = 0
    assert scores == pytest.approx({ids["a"]: -0.1, ids["b"]: -0.26, ids["c"]: -0.3, ids["d"]: 0.0})
    assert names(response, ids) == ["d", "a", "b", "c"]
    assert body["results"][0]["cosines"] == {"image": 0.0, "negative": 0.0, "text": 0.0}


def test_weights_zero_disable_parts_and_are_not_encoded(indexed, alice, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"image": [0, 0, 1, 0], "text": [0, 1, 0, 0]}
    response = client_for(alice).post(
        f"/api/v1/albums/{album.pk}/search/",
        {"image": io.BytesIO(image_bytes()), "text": "sled", "image_weight": "0", "min_score": "-1"},
        format="multipart",
    )
    assert response.status_code == 200, response.json()
    assert names(response, ids)[0] == "c"
    assert query_vectors["calls"][-1]["image"] is False


def test_threshold_max_results_and_pagination(indexed, alice, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    client = client_for(alice)
    assert names(search(client, album, text="x", min_score=0.5), ids) == ["c", "b"]
    assert names(search(client, album, text="x", min_score=-1, max_results=3), ids) == ["c", "b", "a"]
    page2 = search(client, album, text="x", min_score=-1, page=2, page_size=2).json()
    assert [r["image_id"] for r in page2["results"]] == [ids["a"], ids["d"]] and page2["count"] == 4
    # Album settings apply when the request says nothing.
    Album.objects.filter(pk=album.pk).update(min_search_score=0.7, max_search_results=1)
    body = search(client, album, text="x").json()
    assert [r["image_id"] for r in body["results"]] == [ids["c"]]
    assert (body["min_score"], body["max_results"]) == (0.7, 1)


def test_siglip_calibration_on_text_only(indexed, alice, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"image": [1, 0, 0, 0], "text": [0, 1, 0, 0]}
    query_vectors["logits"] = (np.log(10.0), -5.0)  # sigmoid(10·cos − 5)
    response = search(client_for(alice), album, image_base64=base64.b64encode(image_bytes()).decode(), text="x", min_score=-1)
    by_id = {r["image_id"]: r for r in response.json()["results"]}
    sig = lambda x: 1 / (1 + np.exp(-(10 * x - 5)))  # noqa: E731
    b = by_id[ids["b"]]
    assert b["cosines"]["image"] == 0.8  # image cosines are not calibrated
    assert b["cosines"]["text"] == pytest.approx(round(sig(0.6), 4))
    assert b["score"] == pytest.approx(round((0.8 + sig(0.6)) / 2, 4), abs=1e-4)


@pytest.mark.parametrize(
    "body,code",
    [
        ({"negative_text": "screenshots"}, "negative_only_query"),
        ({}, "empty_query"),
        ({"text": "x", "text_weight": -1}, "invalid"),
        ({"text": "x", "max_results": 10_000_000}, "invalid"),
        ({"text": "x", "colour": "red"}, "invalid"),
        ({"image_base64": "***not base64***"}, "invalid_base64"),
        ({"image_base64": base64.b64encode(b"hello").decode()}, "not_an_image"),
        ({"text": "x", "image_id": 1, "image_base64": "aGk="}, "invalid"),
    ],
)
def test_bad_queries_are_clear_400s(indexed, alice, client_for, query_vectors, body, code):
    album, _ = indexed
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    response = search(client_for(alice), album, **body)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code


def test_text_on_an_image_only_album_says_why(indexed, alice, client_for, query_vectors):
    album, _ = indexed
    Album.objects.filter(pk=album.pk).update(active_model_id="dense:dinov2-small@sha256:0123456789ab")
    response = search(client_for(alice), album, text="dog")
    assert response.status_code == 400
    assert response.json()["code"] == "encoder_modality_unsupported"
    assert "image-only" in response.json()["message"]


def test_words_on_an_album_indexed_without_concepts_say_to_reindex(indexed, alice, client_for):
    album, _ = indexed
    Album.objects.filter(pk=album.pk).update(active_model_id="dense:efficientnet-lite0@sha256:0123456789ab")
    response = search(client_for(alice), album, text="dog")
    assert response.status_code == 409 and response.json()["code"] == "concepts_not_indexed"
    unknown = search(client_for(alice), album, text="blorfish")  # the words are checked first
    assert unknown.status_code == 400 and unknown.json()["code"] == "concept_not_found"


def test_unindexed_album_is_a_409(alice, client_for):
    album = album_services.album_create(owner=alice, name="empty")
    response = search(client_for(alice), album, text="x")
    assert response.status_code == 409 and response.json()["code"] == "album_not_indexed"


def test_search_query_count_is_pinned(indexed, alice, client_for, query_vectors, django_assert_num_queries,
                                      monkeypatch):
    album, ids = indexed
    client = client_for(alice)
    monkeypatch.setattr(selectors, "_dims", {})  # the model's vector width is read once per process
    # album, the width, then one statement (access check, stored vector, candidates scored in SQL and
    # their labels) with its search settings — plus the SAVEPOINT/RELEASE pair that the search
    # transaction becomes inside the test's own transaction.
    with django_assert_num_queries(6):
        assert search(client, album, image_id=ids["a"], min_score=-1).status_code == 200
    with django_assert_num_queries(5):
        assert search(client, album, image_id=ids["b"], min_score=-1).status_code == 200


def test_similar_and_duplicates(indexed, alice, client_for):
    album, ids = indexed
    client = client_for(alice)
    body = client.get(f"/api/v1/images/{ids['b']}/similar/?min_score=-1").json()
    assert [r["image_id"] for r in body["results"]] == [ids["a"], ids["c"], ids["d"]]
    groups = client.get(f"/api/v1/albums/{album.pk}/duplicates/?threshold=0.8").json()
    assert groups["count"] == 1
    assert {m["image_id"] for m in groups["groups"][0]} == {ids["a"], ids["b"]}
    assert client.get(f"/api/v1/albums/{album.pk}/duplicates/?threshold=0.99").json()["count"] == 0
    assert client.get(f"/api/v1/albums/{album.pk}/duplicates/?threshold=2").status_code == 400


def test_non_members_get_404_everywhere_including_foreign_query_images(indexed, alice, bob, client_for, query_vectors):
    album, ids = indexed
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    outsider = client_for(bob)
    missing = outsider.post("/api/v1/albums/999999/search/", {"text": "x"}, format="json")
    foreign = search(outsider, album, text="x")
    assert foreign.status_code == missing.status_code == 404 and foreign.json() == missing.json()
    assert outsider.get(f"/api/v1/images/{ids['a']}/similar/").status_code == 404
    assert outsider.get(f"/api/v1/albums/{album.pk}/duplicates/").status_code == 404
    # Bob's own album, with Alice's image as the query image: that image is not his to see.
    bobs = album_services.album_create(owner=bob, name="bob's")
    Album.objects.filter(pk=bobs.pk).update(active_model_id=MODEL)
    response = search(outsider, bobs, image_id=ids["a"])
    assert response.status_code == 404 and response.json()["code"] == "image_not_found"
    assert client_for(None).post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json").status_code == 401


def test_viewers_can_search(indexed, alice, bob, client_for, query_vectors):
    album, ids = indexed
    album_services.album_member_add(album=album, username="bob", role="viewer")
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    assert names(search(client_for(bob), album, text="x", min_score=-1), ids)[0] == "c"


def test_combined_query_finds_what_neither_part_ranks_first(indexed, alice, client_for, query_vectors, settings):
    """k' = 1: the image part's nearest is a, the text part's is c, but the best combined match is
    the image between them, which only the combined query vector proposes."""
    album, ids = indexed
    between = Image.objects.create(album=album, file="e.png", original_name="e.png", sha256="e" * 64, bytes=1,
                                   mime="image/png", status="indexed")
    Embedding.objects.create(image=between, album=album, model_id=MODEL, dim=4, vector=unit([1, 1, 0, 0]))
    settings.LOUPE_SEARCH_CANDIDATES = 1
    query_vectors["vectors"] = {"image": [1, 0, 0, 0], "text": [0, 1, 0, 0]}
    body = search(client_for(alice), album, image_base64=base64.b64encode(image_bytes()).decode(), text="x",
                  min_score=-1, max_results=1).json()
    assert [r["image_id"] for r in body["results"]] == [between.pk]
    assert body["results"][0]["score"] == pytest.approx(0.7071, abs=1e-4)


def test_combined_query_vector_math():
    from search.scoring import Weights, combined_query

    q = combined_query({"image": unit([1, 0, 0, 0]), "text": unit([0, 1, 0, 0]), "negative": unit([0, 0, 1, 0])},
                       Weights(image=1, text=3, negative=0.5))
    expected = np.array([0.25, 0.75, -0.5, 0])
    assert np.allclose(q, expected / np.linalg.norm(expected))
    assert combined_query({"image": unit([1, 0, 0, 0]), "negative": unit([1, 0, 0, 0])}, Weights(negative=1)) is None


def test_search_query_count_as_served(transactional_db, indexed, alice, client_for, django_assert_num_queries,
                                      monkeypatch):
    """As gunicorn serves it (autocommit, a persistent connection): the album, then one statement
    that checks the query image's access, reads its stored vector and scores the candidates in SQL,
    prepared once per connection, the labels of the candidates included. The HNSW scan settings are set once per connection, not in a
    transaction per search (search.selectors.hnsw_settings), and the vectors' width read once per
    process and album."""
    album, ids = indexed
    client = client_for(alice)
    from django.db import connection

    connection.ensure_connection()
    if hasattr(connection.connection, "_loupe_hnsw_settings"):
        del connection.connection._loupe_hnsw_settings
    monkeypatch.setattr(selectors, "_dims", {})
    if hasattr(connection.connection, "_loupe_prepared"):
        del connection.connection._loupe_prepared
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
    with django_assert_num_queries(5) as first:
        assert search(client, album, image_id=ids["a"], min_score=-1).status_code == 200
    assert any("set_config('hnsw.ef_search'" in q["sql"] for q in first.captured_queries)
    prepare = next(q["sql"] for q in first.captured_queries if q["sql"].startswith("PREPARE"))
    assert "albums_albummembership" in prepare  # the access check is in the statement
    assert "rag_label" in prepare  # and the results' labels
    with django_assert_num_queries(2) as later:
        response = search(client, album, image_id=ids["b"], min_score=-1)
    # The prepared statement's generic plan finds every image of a small album (no starved kNN).
    assert names(response, ids) == ["b", "a", "c", "d"]
    assert not any("set_config" in q["sql"] or q["sql"].startswith(("BEGIN", "SAVEPOINT", "PREPARE"))
                   for q in later.captured_queries)
    assert later.captured_queries[-1]["sql"].startswith("EXECUTE loupe_")
    # More like this: the image (with the caller's role), then the same one statement (one row deeper
    # for the image it leaves out: prepared once more).
    with django_assert_num_queries(3):
        assert client.get(f"/api/v1/images/{ids['b']}/similar/?min_score=-1").status_code == 200
    with django_assert_num_queries(2):
        similar = client.get(f"/api/v1/images/{ids['c']}/similar/?min_score=-1")
    assert [r["image_id"] for r in similar.json()["results"]] == [ids["b"], ids["a"], ids["d"]]
