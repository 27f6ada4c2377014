"""Searching from a selection on the map: `image_ids` makes the normalized mean of their stored
vectors the query image. Hand-built vectors, as in test_search_api.py."""

import base64

import pytest

from albums import services as album_services
from search import services
from tests.images import image_bytes
from tests.search.test_search_api import indexed, query_vectors, search, unit  # noqa: F401 — fixtures

pytestmark = pytest.mark.django_db


def test_the_mean_of_the_chosen_images_is_the_query_and_they_are_left_out(indexed, alice, client_for,
                                                                          query_vectors):
    album, ids = indexed
    vectors = {name: unit(v) for name, v in {"a": [1, 0, 0, 0], "b": [0.8, 0.6, 0, 0], "c": [0, 1, 0, 0],
                                              "d": [0, 0, 1, 0]}.items()}
    by_hand = unit(vectors["a"] + vectors["c"])
    expected = {name: round(float(by_hand @ v), 4) for name, v in vectors.items()}
    client = client_for(alice)
    response = search(client, album, image_ids=[ids["a"], ids["c"]], min_score=-1)
    assert response.status_code == 200, response.json()
    got = {r["image_id"]: r["score"] for r in response.json()["results"]}
    assert got == {ids["b"]: expected["b"], ids["d"]: expected["d"]}  # a and c left out by default
    response = search(client, album, image_ids=[ids["a"], ids["c"]], min_score=-1, exclude_query_image=False)
    got = {r["image_id"]: r["score"] for r in response.json()["results"]}
    assert got == {ids[name]: expected[name] for name in vectors}
    assert query_vectors["calls"] == []  # stored vectors: nothing encoded

    # With text it combines as a query image does: the same answer as an uploaded image whose vector
    # is that mean.
    query_vectors["vectors"] = {"text": [0, 0, 1, 0], "image": list(by_hand)}
    with_text = search(client, album, image_ids=[ids["a"], ids["c"]], text="x", min_score=-1,
                       exclude_query_image=False).json()["results"]
    photo = base64.b64encode(image_bytes()).decode()
    as_image = search(client, album, image_base64=photo, text="x", min_score=-1).json()["results"]
    assert [(r["image_id"], r["score"], r["cosines"]) for r in with_text] == \
        [(r["image_id"], r["score"], r["cosines"]) for r in as_image]
    assert {r["image_id"]: r["cosines"] for r in with_text}[ids["d"]] == {"image": expected["d"], "text": 1.0}


def test_image_ids_of_another_album_are_404_and_bad_lists_are_400(indexed, alice, bob, client_for, query_vectors):
    album, ids = indexed
    bobs = album_services.album_create(owner=bob, name="bob's")
    from albums.models import Album, Image

    Album.objects.filter(pk=bobs.pk).update(active_model_id=album.active_model_id)
    other = Image.objects.create(album=bobs, file="x.png", original_name="x.png", sha256="f" * 64, bytes=1,
                                 mime="image/png", width=1, height=1, status="indexed")
    client = client_for(alice)
    for wanted in ([ids["a"], other.pk], [other.pk + 1000]):
        response = search(client, album, image_ids=wanted)
        assert response.status_code == 404 and response.json()["code"] == "image_not_found"
    response = search(client_for(bob), bobs, image_ids=[ids["a"]])  # Alice's image from Bob's album
    assert response.status_code == 404 and response.json()["code"] == "image_not_found"
    too_many = search(client, album, image_ids=list(range(1, services.MAX_QUERY_IMAGES + 2)))
    assert too_many.status_code == 400 and "image_ids" in too_many.json()["extra"]["fields"]
    both = search(client, album, image_ids=[ids["a"]], image_id=ids["b"])
    assert both.status_code == 400 and "image_id and image_ids" in both.json()["extra"]["fields"]["image"][0]
    assert search(client, album, image_ids=[]).status_code == 400
    assert search(client, album, image_ids=["x"]).status_code == 400
