"""Labels from support sets where images are shown: the images list and image API, the album page
and search results carry them, filter by them, and a search can be restricted to one label inside
its candidate statement. Vectors and labels are written directly: what is under test is how they
are read (search/rag/labeling.py writes labels; tests/rag covers that)."""

import json

import pytest

from albums import services as album_services
from albums.api.serializers import ImageLabelSerializer
from albums.hooks import LabelState
from search import hooks as search_hooks
from search.api.views import SearchLabelSerializer
from search.rag.models import Label, SupportClass, SupportSet
from tests.search.test_search_api import indexed, names, query_vectors, search  # noqa: F401 — fixtures

pytestmark = pytest.mark.django_db


def _set(album, name, classes):
    support_set = SupportSet.objects.create(album=album, name=name, encoder_spec="dense:efficientnet-lite0")
    return support_set, {label: SupportClass.objects.create(support_set=support_set, label=label) for label in classes}


def _label(image_id, support_set, support_class, state, margin):
    return Label.objects.create(image_id=image_id, support_set=support_set, support_class=support_class,
                                label=support_class.label, predicted_label=support_class.label, scores={}, margin=margin,
                                state=state)


@pytest.fixture
def labeled(indexed):
    """coat on a (accepted, 0.9) and d (predicted, 0.1), hat on b (rejected, 0.2); another set puts
    "50% wool" on a; c has no label."""
    album, ids = indexed
    clothes, classes = _set(album, "clothes", ["coat", "hat"])
    fabric, fabrics = _set(album, "fabric", ["50% wool"])
    _label(ids["a"], clothes, classes["coat"], "accepted", 0.9)
    _label(ids["d"], clothes, classes["coat"], "predicted", 0.1)
    _label(ids["b"], clothes, classes["hat"], "rejected", 0.2)
    _label(ids["a"], fabric, fabrics["50% wool"], "predicted", 0.5)
    return album, ids, clothes, fabric


def image_names(response, ids):
    assert response.status_code == 200, response.content
    by_id = {v: k for k, v in ids.items()}
    return sorted(by_id[item["id"]] for item in response.json()["results"])


def test_images_list_carries_labels_in_one_query_and_filters_by_them(labeled, client_for, make_user,
                                                                     django_assert_num_queries):
    album, ids, clothes, fabric = labeled
    viewer = make_user("viewer")
    album_services.album_member_add(album=album, username=viewer.username, role="viewer")  # viewers read labels
    api = client_for(viewer)
    url = f"/api/v1/albums/{album.pk}/images/"
    # album access, count, the page, and the page's labels: one query, not one per image
    with django_assert_num_queries(4):
        page = api.get(url).json()
    by_id = {item["id"]: item["labels"] for item in page["results"]}
    assert by_id[ids["a"]] == [{"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "state": "accepted", "margin": 0.9},
                               {"support_set": fabric.pk, "support_set_name": "fabric", "label": "50% wool", "state": "predicted", "margin": 0.5}]
    assert by_id[ids["c"]] == []
    assert image_names(api.get(url, {"label": "coat"}), ids) == ["a", "d"]
    assert image_names(api.get(url, {"label": "coat", "label_state": "predicted"}), ids) == ["d"]
    assert image_names(api.get(url, {"margin_below": "0.3"}), ids) == ["b", "d"]
    assert image_names(api.get(url, {"support_set": fabric.pk}), ids) == ["a"]
    # every condition holds for one and the same label: a's accepted coat is not below 0.6, its wool is no coat
    assert image_names(api.get(url, {"label": "coat", "margin_below": "0.6"}), ids) == ["d"]
    detail = api.get(f"/api/v1/images/{ids['d']}/").json()
    assert detail["labels"] == [{"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "state": "predicted", "margin": 0.1}]
    for bad in ({"label_state": "maybe"}, {"margin_below": "2"}, {"margin_below": "x"}, {"support_set": "one"}):
        refused = api.get(url, bad)
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_filter", (bad, refused.content)


def test_a_set_of_another_album_filters_nothing_and_looks_missing(labeled, alice, client_for, make_user):
    album, ids, clothes, _ = labeled
    bob = make_user("bob2")
    own = album_services.album_create(owner=bob, name="bob's")
    album_services.album_member_add(album=own, username=alice.username, role="viewer")
    theirs, _ = _set(own, "theirs", ["coat"])  # alice can see it, but it is not this album's set
    api = client_for(alice)
    url = f"/api/v1/albums/{album.pk}/images/"
    foreign = api.get(url, {"support_set": theirs.pk})
    missing = api.get(url, {"support_set": theirs.pk + 1000})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() and foreign.json()["code"] == "support_set_not_found"
    # bob, no member of alice's album, learns nothing from her set's id either
    assert client_for(bob).get(url, {"support_set": clothes.pk}).status_code == 404


def test_search_results_carry_labels_and_a_label_restricts_the_candidates(labeled, alice, client_for, query_vectors):
    album, ids, clothes, fabric = labeled
    api = client_for(alice)
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}  # c, b, a, d unrestricted
    plain = search(api, album, text="x", min_score=-1)
    assert names(plain, ids) == ["c", "b", "a", "d"]
    assert plain.json()["results"][1]["labels"] == [
        {"support_set": clothes.pk, "support_set_name": "clothes", "label": "hat", "state": "rejected", "margin": 0.2}]
    # The two nearest are not coats: a filter after the kNN would answer nothing with max_results 2.
    coats = search(api, album, text="x", min_score=-1, max_results=2, label={"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat"})
    assert names(coats, ids) == ["a", "d"], coats.content
    only_predicted = {"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "states": ["predicted"]}
    assert names(search(api, album, text="x", min_score=-1, label=only_predicted), ids) == ["d"]
    # rejected is left out unless asked for
    assert names(search(api, album, text="x", min_score=-1, label={"support_set": clothes.pk, "support_set_name": "clothes", "label": "hat"}), ids) == []
    hats = {"support_set": clothes.pk, "support_set_name": "clothes", "label": "hat", "states": ["rejected"]}
    assert names(search(api, album, text="x", min_score=-1, label=hats), ids) == ["b"]
    # a "%" in a class is a class like any other; the stored-vector path restricts as well
    wool = {"support_set": fabric.pk, "label": "50% wool"}
    assert names(search(api, album, text="x", min_score=-1, label=wool), ids) == ["a"]
    assert names(search(api, album, image_id=ids["b"], min_score=-1, label={"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat"}),
                 ids) == ["a", "d"]
    # Every search path reads the labels with its candidates: stored image, more-like-this, two parts.
    both = [{"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "state": "accepted", "margin": 0.9},
            {"support_set": fabric.pk, "support_set_name": "fabric", "label": "50% wool", "state": "predicted", "margin": 0.5}]
    for response in (search(api, album, image_id=ids["b"], min_score=-1),
                     api.get(f"/api/v1/images/{ids['b']}/similar/?min_score=-1"),
                     search(api, album, image_id=ids["b"], text="x", min_score=-1)):
        assert response.status_code == 200, response.content
        by_id = {hit["image_id"]: hit["labels"] for hit in response.json()["results"]}
        assert by_id[ids["a"]] == both and by_id[ids["c"]] == []
    # The search page sends a form: the label is one JSON text there.
    only = json.dumps({"support_set": clothes.pk, "label": "coat", "states": ["predicted"]})
    form = api.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x", "min_score": "-1", "label": only}, format="multipart")
    assert names(form, ids) == ["d"], form.content
    bad = api.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x", "label": "coat"}, format="multipart")
    assert bad.status_code == 400 and "label" in bad.json()["extra"]["fields"]


def test_a_bad_label_restriction_is_refused_with_the_error_shape(labeled, alice, client_for, make_user, query_vectors):
    album, ids, clothes, _ = labeled
    api = client_for(alice)
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    unknown_class = search(api, album, text="x", label={"support_set": clothes.pk, "support_set_name": "clothes", "label": "scarf"})
    assert unknown_class.status_code == 400 and unknown_class.json()["code"] == "unknown_class"
    bad_state = search(api, album, text="x", label={"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "states": ["maybe"]})
    assert bad_state.status_code == 400 and "label" in bad_state.json()["extra"]["fields"]
    other = album_services.album_create(owner=make_user("carol"), name="carol's")
    theirs, _ = _set(other, "theirs", ["coat"])
    foreign = search(api, album, text="x", label={"support_set": theirs.pk, "label": "coat"})
    missing = search(api, album, text="x", label={"support_set": theirs.pk + 1000, "label": "coat"})
    assert foreign.status_code == missing.status_code == 404 and foreign.json() == missing.json()


def test_album_page_shows_label_chips_and_filters_in_the_address(labeled, alice, client_for):
    from django.test import Client

    album, ids, clothes, _ = labeled
    client = Client()
    client.force_login(alice)
    page = client.get(f"/albums/{album.pk}/").content.decode()
    assert 'class="label-chip accepted"' in page and 'class="label-chip predicted"' in page
    assert ">hat</span>" not in page  # rejected: not the image's class, no chip
    assert 'id="label-filter"' in page and f'data-set="{clothes.pk}"' in page
    filtered = client.get(f"/albums/{album.pk}/", {"support_set": clothes.pk, "support_set_name": "clothes", "label": "coat", "label_state": "predicted"})
    tiles = filtered.content.decode().count('class="tile photo')
    assert tiles == 1 and f'data-id="{ids["d"]}"' in filtered.content.decode()
    # junk in the address shows every photo, as the page does for a junk status
    assert client.get(f"/albums/{album.pk}/", {"label_state": "maybe"}).content.decode().count('class="tile photo') == 4


def test_review_filters_by_the_scope_of_a_labeling_job(labeled, alice, client_for):
    from django.test import Client

    from workers.models import IndexJob

    album, ids, clothes, fabric = labeled
    selection = IndexJob.objects.create(album=album, kind=IndexJob.Kind.LABEL, params={
        "support_set_id": clothes.pk, "scope": "images", "image_ids": [ids["a"], ids["b"]]})
    whole = IndexJob.objects.create(album=album, kind=IndexJob.Kind.LABEL, params={
        "support_set_id": clothes.pk, "scope": "album", "image_ids": None})
    of_other_set = IndexJob.objects.create(album=album, kind=IndexJob.Kind.LABEL, params={
        "support_set_id": fabric.pk, "scope": "album", "image_ids": None})
    api = client_for(alice)
    url = f"/api/v1/support-sets/{clothes.pk}/labels/"

    def images(**params):
        response = api.get(url, params)
        assert response.status_code == 200, response.content
        return sorted(item["image"] for item in response.json()["results"])

    # the selection's labels, whichever job wrote them (a job skips photos labeled already)
    assert images(job=selection.pk) == sorted([ids["a"], ids["b"]])
    assert images(job=whole.pk) == sorted([ids["a"], ids["b"], ids["d"]])
    assert images(job=selection.pk, state="accepted") == [ids["a"]]
    other = api.get(url, {"job": of_other_set.pk})
    missing = api.get(url, {"job": of_other_set.pk + 1000})
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()
    assert api.get(url, {"job": "x"}).json()["code"] == "invalid_filter"
    client = Client()
    client.force_login(alice)
    page = client.get(f"/support-sets/{clothes.pk}/review/").content.decode()
    assert f'<option value="{selection.pk}">job #{selection.pk}: 2 selected photos' in page
    assert f'<option value="{whole.pk}">job #{whole.pk}: the whole album' in page


def test_one_vocabulary_of_label_states_for_the_model_and_both_apis():
    """The label model, the images API and the search API's restriction name the states from one class
    (albums.hooks.LabelState, below both apps that show labels): two spellings would split the API
    schema's enum in two (drf-spectacular's check fails the deploy check)."""
    assert Label.State is LabelState
    assert Label._meta.get_field("state").choices == LabelState.choices
    assert list(ImageLabelSerializer().fields["state"].choices.items()) == list(LabelState.choices)
    assert list(SearchLabelSerializer().fields["states"].child.choices.items()) == list(LabelState.choices)


def test_without_the_labeling_layer_results_carry_no_labels_and_a_restriction_is_refused(
        labeled, alice, client_for, query_vectors, monkeypatch):
    """search asks search.rag for labels through search/hooks.py; a server without its provider
    still searches, shows no labels (though the rows exist) and refuses a label restriction."""
    album, ids, clothes, _ = labeled
    monkeypatch.setattr(search_hooks, "_search_labels", None)
    api = client_for(alice)
    query_vectors["vectors"] = {"text": [0, 1, 0, 0]}
    plain = search(api, album, text="x", min_score=-1)
    assert names(plain, ids) == ["c", "b", "a", "d"]
    assert [hit["labels"] for hit in plain.json()["results"]] == [[], [], [], []]
    stored = search(api, album, image_id=ids["b"], min_score=-1)
    assert stored.status_code == 200 and [hit["labels"] for hit in stored.json()["results"]] == [[], [], [], []]
    refused = search(api, album, text="x", label={"support_set": clothes.pk, "label": "coat"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_label"
